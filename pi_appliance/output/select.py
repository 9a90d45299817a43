"""Choosing the output: ``auto | pigpio | gpiozero | sim``, logged with the reason; never silence.

``auto``: a Raspberry Pi 5 (RP1; pigpio cannot drive it) → gpiozero (lgpio); another Pi → pigpio if
pigpiod answers, else gpiozero with a warning; not a Pi → the embedded simulator, with the pigpio
output driving it over the socket exactly as on a Pi. If the chosen output cannot open, ``open_output``
raises :class:`OutputError`: nothing ever falls back to playing nothing.

The simulator (kind ``sim``) runs in-process on 127.0.0.1 (``sim_port``, 0 = a free port). Its edges go
live to ``<state_dir>/sim-edges.jsonl`` when a ``state_dir`` is given (header ``{"tick0_wall_ns": …,
"gpios": [g]}``, then one ``{"t", "wall_ns", "gpio", "level"}`` line per edge and one ``{"wave",
"sent", "start", "end"}`` line per finished slice), and to ``record_vcd``/``record_wav`` when set,
which are complete once ``await output.close()`` returns. ``output.sim`` is the :class:`Simulator`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from pi_appliance.config import OutputSettings
from pi_appliance.errors import OutputError
from pi_appliance.output.base import Output
from pi_appliance.output.pigpio import PigpioOutput

if TYPE_CHECKING:
    from pi_appliance.sim import Simulator

log = logging.getLogger("pi_appliance.output")

MODEL_FILES = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
SIM_EDGES_FILE = "sim-edges.jsonl"


def board_model() -> str:
    """The device-tree model string ("Raspberry Pi 4 Model B Rev 1.4"), or "" when there is none."""
    for path in MODEL_FILES:
        try:
            return Path(path).read_bytes().rstrip(b"\0").decode("ascii", "replace").strip()
        except OSError:
            continue
    return ""


class SimOutput(PigpioOutput):
    """The pigpio output driving the in-process simulator; ``close`` stops it and writes its files."""

    kind = "sim"

    def __init__(self, settings: OutputSettings, *, reason: str = "", edges_path: str = "") -> None:
        from pi_appliance.sim import SimServer  # the simulator loads only when it is the output

        self.server = SimServer(
            "127.0.0.1",
            settings.sim_port,
            realtime=settings.sim_realtime,
            gpios=[settings.gpio],
            record_vcd=settings.record_vcd,
            record_wav=settings.record_wav,
            record_jsonl=edges_path,
            keep_edges=1_000_000,
            permitted=0xFFFFFFFF,
        )
        # a virtual clock moves 10 ms per poll: poll fast so tunes run ahead of real time
        poll_s = 0.01 if settings.sim_realtime else 0.001
        super().__init__("127.0.0.1", self.server.port, settings.gpio, poll_s=poll_s, reason=reason)
        self.edges_path = edges_path

    @property
    def sim(self) -> Simulator:
        return self.server.sim

    async def open(self) -> None:
        self.server.start()
        try:
            await super().open()
        except BaseException:
            await asyncio.to_thread(self.server.stop)
            raise

    async def close(self) -> None:
        try:
            await super().close()
        finally:
            await asyncio.to_thread(self.server.stop)


async def open_output(settings: OutputSettings, *, state_dir: str | Path | None = None) -> Output:
    """Pick, log and open the buzzer output the settings ask for."""
    kind = settings.kind
    model = board_model()
    reason = f"output = {kind!r} in the configuration"
    if kind == "auto":
        if not model.startswith("Raspberry Pi"):
            kind = "sim"
            reason = "auto: no Raspberry Pi found (no device-tree model): the embedded simulator"
        elif "Raspberry Pi 5" in model or "Compute Module 5" in model:
            kind = "gpiozero"
            reason = f"auto: {model}: pigpio cannot drive the RP1, using gpiozero (software timing)"
        else:
            out = PigpioOutput(settings.pigpio_host, settings.pigpio_port, settings.gpio,
                               reason=f"auto: {model} with pigpiod answering")  # fmt: skip
            try:
                await out.open()
            except OutputError as e:
                kind = "gpiozero"
                reason = f"auto: {model} but {e}: using gpiozero (software timing)"
                log.warning("output: %s", reason)
            else:
                log.info("output: pigpio (%s)", out.reason)
                return out
    out: Output
    if kind == "pigpio":
        out = PigpioOutput(settings.pigpio_host, settings.pigpio_port, settings.gpio, reason=reason)
    elif kind == "gpiozero":
        from pi_appliance.output.gpiozero import GpiozeroOutput

        out = GpiozeroOutput(settings.gpio, settings.gpiozero_pin_factory or None, reason=reason)
    elif kind == "sim":
        edges = str(Path(state_dir) / SIM_EDGES_FILE) if state_dir is not None else ""
        out = SimOutput(settings, reason=reason, edges_path=edges)
    else:
        raise OutputError(f"unknown output kind {kind!r}")
    log.info("output: %s (%s)", kind, reason)
    await out.open()
    return out
