"""A pigpiod-compatible simulator: pigpiod's socket protocol, waves on its own clock, every edge
recorded, VCD and WAV out. Stands in for the Pi where there is none (the daemon's embedded default).

``SimServer(port=0).start()`` serves a :class:`Simulator` on a TCP port; ``pi-appliance-sim`` runs one
from the command line.
"""

from pi_appliance.sim.core import RealClock, Simulator, VirtualClock
from pi_appliance.sim.server import SimServer

__all__ = ["RealClock", "SimServer", "Simulator", "VirtualClock"]
