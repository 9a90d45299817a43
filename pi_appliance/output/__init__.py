"""Buzzer outputs behind one interface (:class:`pi_appliance.output.base.Output`)."""

from pi_appliance.output.base import Output, OutputInfo, OutputListener

__all__ = ["Output", "OutputInfo", "OutputListener"]
