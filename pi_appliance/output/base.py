"""The one small interface every buzzer output implements (as gpiozero's pin Factory).

Only ``output/pigpio.py`` imports pigpio and only ``output/gpiozero.py`` imports gpiozero; the
player sees nothing but this class. All methods are called from the daemon's event loop thread;
an output that feeds hardware from a thread of its own hands events back with
``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar, Protocol

from pi_appliance.music import Tune


class OutputListener(Protocol):
    """What the player hands to an output to hear about the end of a tune and about failures."""

    def output_finished(self) -> None:
        """The tune started by the last ``play`` ended by itself (not by ``stop``)."""

    def output_error(self, message: str) -> None:
        """The output failed while playing; playback has stopped and the pin is low if reachable."""


@dataclass(frozen=True, slots=True)
class OutputInfo:
    """What ``status``/``outputs``/mDNS TXT say about the output."""

    kind: str  # "pigpio", "gpiozero", "sim"
    name: str  # human-readable, e.g. "pigpio GPIO18 @ localhost:8888"
    reason: str = ""  # why auto picked it


class Output(abc.ABC):
    """A buzzer: plays one Tune at a time, from a position, at a volume (duty cycle)."""

    kind: ClassVar[str] = "abstract"

    def __init__(self) -> None:
        self._listener: OutputListener | None = None

    def set_listener(self, listener: OutputListener | None) -> None:
        self._listener = listener

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Acquire the device (connect to pigpiod, claim the pin). Raise OutputError on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop, leave the pin low, release everything."""

    @abc.abstractmethod
    async def play(self, tune: Tune, start_us: int = 0, *, at_ns: int | None = None) -> None:
        """Stop whatever plays, then play ``tune`` from ``start_us`` into it.

        ``at_ns``, when given, is a ``time.time_ns()`` instant (NTP-synchronised wall clock) at which
        the first edge must happen: how a fleet starts together. Returns once playback is scheduled.
        """

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop within one slice and leave the pin low. No ``output_finished`` follows."""

    @abc.abstractmethod
    def position_us(self) -> int | None:
        """Where the current tune is (µs from its start, seek offset included); None when idle."""

    @abc.abstractmethod
    async def set_volume(self, percent: int) -> None:
        """0..100 → duty cycle 0..50 %. 0 is silence with the clock still running."""

    @property
    @abc.abstractmethod
    def info(self) -> OutputInfo:
        """Kind, name and the reason it was chosen."""
