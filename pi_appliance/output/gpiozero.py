"""The gpiozero output: for boards pigpio cannot drive (Pi 5; Raspberry Pi OS Trixie has no pigpio).

Through gpiozero's pin factories (lgpio on a Pi 5, MockFactory in tests): each note sets the PWM
frequency and duty of a :class:`gpiozero.PWMOutputDevice`. Timing is software, but against absolute
deadlines: note ``k`` starts at ``t0 + T_k`` on the monotonic clock, with ``T_k`` the same integer
running total the wave planner uses, so a late wake-up delays one note's onset and never shifts the
rest (no drift).

Accuracy (``bench/timing.py`` measures it): onsets late by the thread's wake-up latency (typically
0.1-1 ms on an idle system, milliseconds under load, worse during GC pauses); pitch as exact as the
pin factory makes it (lgpio's ``tx_pwm`` rounds the period to whole µs: ≤ 865.6/P cents); no slice
joins, since each note is one PWM setting. Compare the pigpio output: DMA-timed, 0 µs.

Only this module imports gpiozero.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from importlib.metadata import entry_points

from gpiozero import Device, PWMOutputDevice
from gpiozero.exc import GPIOZeroError
from gpiozero.pins import Factory
from gpiozero.pins.mock import MockFactory, MockPWMPin

from pi_appliance.errors import OutputError
from pi_appliance.music import Tune
from pi_appliance.output.base import Output, OutputInfo
from pi_appliance.output.waveplan import duty_for_volume

log = logging.getLogger("pi_appliance.output.gpiozero")


def make_factory(name: str | Factory | None) -> Factory:
    """A pin factory by gpiozero's entry-point name ("lgpio", "rpigpio", "mock", ...) or its default."""
    if isinstance(name, Factory):
        return name
    try:
        if not name:
            return Device._default_pin_factory()
        if name.lower() == "mock":
            return MockFactory(pin_class=MockPWMPin)
        for ep in entry_points(group="gpiozero_pin_factories"):
            if ep.name.lower() == name.lower():
                return ep.load()()
    except (GPIOZeroError, ImportError, OSError, RuntimeError) as e:
        raise OutputError(f"gpiozero pin factory {name or '(default)'}: {e}") from None
    raise OutputError(f"gpiozero has no pin factory called {name!r}")


class GpiozeroOutput(Output):
    """A buzzer on ``gpio`` through a gpiozero pin factory."""

    kind = "gpiozero"

    def __init__(self, gpio: int = 18, pin_factory: str | Factory | None = None, *, reason: str = "") -> None:
        super().__init__()
        self.gpio = gpio
        self.factory_name = pin_factory
        self.reason = reason
        self.volume = 100
        self.factory: Factory | None = None
        self.device: PWMOutputDevice | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._t0_ns = 0
        self._start_us = 0
        self._end_us = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def info(self) -> OutputInfo:
        fname = type(self.factory).__name__ if self.factory is not None else str(self.factory_name or "default")
        return OutputInfo(self.kind, f"gpiozero GPIO{self.gpio} via {fname}", self.reason)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.factory = make_factory(self.factory_name)
        try:
            self.device = PWMOutputDevice(self.gpio, initial_value=0, frequency=440, pin_factory=self.factory)
        except (GPIOZeroError, OSError, RuntimeError) as e:
            raise OutputError(f"gpiozero GPIO{self.gpio}: {e}") from None
        log.info("gpiozero output: %s", self.info.name)

    async def close(self) -> None:
        await self.stop()
        if self.device is not None:
            with contextlib.suppress(GPIOZeroError, OSError):
                self.device.close()
            self.device = None

    async def play(self, tune: Tune, start_us: int = 0, *, at_ns: int | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await self.stop()
        if self.device is None:
            raise OutputError("gpiozero output is not open")
        self._stop = threading.Event()
        self._start_us = max(0, min(start_us, tune.duration_us))
        self._end_us = tune.duration_us
        delay_ns = max(0, at_ns - time.time_ns()) if at_ns is not None else 0
        self._t0_ns = time.monotonic_ns() + delay_ns - self._start_us * 1000
        self._thread = threading.Thread(
            target=self._run, args=(tune, self._stop, self._t0_ns), name="gpiozero-player", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        t, self._thread = self._thread, None
        if t is not None:
            self._stop.set()
            await asyncio.to_thread(t.join)

    def position_us(self) -> int | None:
        if self._thread is None or not self._thread.is_alive():
            return None
        pos = (time.monotonic_ns() - self._t0_ns) // 1000
        return max(self._start_us, min(pos, self._end_us))

    async def set_volume(self, percent: int) -> None:
        self.volume = max(0, min(100, percent))

    def _set(self, freq: float, duty: float) -> None:
        dev = self.device
        assert dev is not None
        if freq <= 0 or duty <= 0:
            dev.value = 0
        else:
            dev.frequency = freq
            dev.value = duty

    def _run(self, tune: Tune, stop: threading.Event, t0_ns: int) -> None:
        error: str | None = None
        finished = False
        try:
            t = 0
            for note in tune.notes:
                t_next = t + note.duration_us
                if t_next <= self._start_us:
                    t = t_next
                    continue
                deadline = t0_ns + max(t, self._start_us) * 1000
                if _wait_until(deadline, stop):
                    return
                self._set(note.freq_hz, duty_for_volume(self.volume))
                t = t_next
            if _wait_until(t0_ns + t * 1000, stop):
                return
            finished = True
        except (GPIOZeroError, OSError, RuntimeError, ValueError) as e:
            error = f"gpiozero GPIO{self.gpio}: {e}"
            log.error("%s", error)
        except Exception as e:  # a bug here must still reach the player, not kill a thread silently
            log.exception("gpiozero player failed")
            error = f"gpiozero output failed: {type(e).__name__}: {e}"
        finally:
            with contextlib.suppress(GPIOZeroError, OSError, RuntimeError, AttributeError):
                self._set(0, 0)
            self._notify(finished and not stop.is_set(), error)

    def _notify(self, finished: bool, error: str | None) -> None:
        loop, listener = self._loop, self._listener
        if loop is None or listener is None or loop.is_closed():
            return
        if error is not None:
            loop.call_soon_threadsafe(listener.output_error, error)
        elif finished:
            loop.call_soon_threadsafe(listener.output_finished)


def _wait_until(deadline_ns: int, stop: threading.Event) -> bool:
    """Sleep until the monotonic instant ``deadline_ns``; True if stopped meanwhile."""
    while True:
        left = deadline_ns - time.monotonic_ns()
        if left <= 0:
            return stop.is_set()
        if stop.wait(left / 1e9):
            return True
