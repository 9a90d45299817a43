"""The pigpio output: a tune as DMA-timed waves, streamed to pigpiod (or the simulator) in slices.

How (research/pigpio-timing.md §1.4): the planner cuts the tune's absolute µs edge timeline into
slices; a feeder thread builds each with ``wave_add_generic`` + ``wave_create_and_pad`` and queues
it with ``wave_send_using_mode(ONE_SHOT_SYNC)``, keeping two queued behind the one playing. It polls
``wave_tx_at``; when the DMA has moved on it deletes the finished slice and builds the next into the
freed slot. Consequences:

* at most three live wave ids, ever (pigpiod's own limit check never fires, so we keep the count);
* the same id is never SYNC-sent right behind itself (that loops it forever, pigpio #457): the
  three slots rotate and every tune starts with ``wave_tx_stop`` (which also clears a stale tail);
* stop is ``wave_tx_stop`` then ``write(gpio, 0)``: immediate, pin low;
* an idle DMA while slices remain is an underrun: logged and counted (``underruns``), the tune goes
  on from where it is;
* pigpiod going away surfaces as ``output_error`` on the listener, the pin is left to pigpiod, and
  the next ``play`` reconnects.

Only this module imports ``pigpio``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import struct
import threading
import time
from collections import deque

import pigpio

from pi_appliance.errors import OutputError
from pi_appliance.music import Tune
from pi_appliance.output.base import Output, OutputInfo
from pi_appliance.output.waveplan import DEFAULT_LIMITS, LEAD_IN_US, Limits, Planner, Slice

log = logging.getLogger("pi_appliance.output.pigpio")

QUEUED = 3  # slices in flight: the one playing and two queued behind it
MAX_LEAD_TRIES = 20
LEAD_TOLERANCE_NS = 300_000  # the widest bracket around the lead wave's send we accept (±150 µs)
LEAD_MARGIN_US = 20_000  # the first lead wave ends this much before the instant; the second fills it
MIN_LEAD_US = 1_000  # closer to the instant than this: start now
DROP_TOLERANCE_US = 5_000  # the DMA idle this long before the queued slices' end: one was dropped
SLACK_WARN_US = 100_000  # warn when less than this much is queued ahead of the DMA
NO_TX_WAVE = 9999
#: what a dead or confused pigpiod connection raises through pigpio.py
LINK_ERRORS = (OSError, struct.error, ConnectionError, pigpio.error, AttributeError)


class PigpioOutput(Output):
    """A buzzer on ``gpio`` of the pigpiod at ``host:port``."""

    kind = "pigpio"

    def __init__(
        self,
        host: str = "localhost",
        port: int = 8888,
        gpio: int = 18,
        *,
        poll_s: float = 0.01,
        limits: Limits = DEFAULT_LIMITS,
        reason: str = "",
        socket_timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.host, self.port, self.gpio = host, port, gpio
        self.poll_s = poll_s
        self.limits = limits
        self.reason = reason
        self.socket_timeout = socket_timeout
        self.volume = 100
        self.underruns = 0  # the DMA ran dry before the next slice was queued
        self.drops = 0  # pigpiod dropped a SYNC-queued slice (pigpio #457); resent, late
        self._pi: pigpio.pi | None = None
        self._feeder: _Feeder | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ Output
    @property
    def info(self) -> OutputInfo:
        return OutputInfo(self.kind, f"{self.kind} GPIO{self.gpio} @ {self.host}:{self.port}", self.reason)

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self._connect)

    async def close(self) -> None:
        await self.stop()
        pi, self._pi = self._pi, None
        if pi is not None:
            await asyncio.to_thread(_release, pi, self.gpio)

    async def play(self, tune: Tune, start_us: int = 0, *, at_ns: int | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await self.stop()
        if self._pi is None:
            await asyncio.to_thread(self._connect)
        assert self._pi is not None
        feeder = _Feeder(self, self._pi, tune, start_us, at_ns)
        self._feeder = feeder
        feeder.start()
        await asyncio.to_thread(feeder.started.wait)
        if feeder.failed_at_start:
            await asyncio.to_thread(feeder.join)
            raise OutputError(feeder.error or "pigpio output failed")

    async def stop(self) -> None:
        feeder, self._feeder = self._feeder, None
        if feeder is not None:
            feeder.stop.set()
            await asyncio.to_thread(feeder.join)

    def position_us(self) -> int | None:
        f = self._feeder
        return f.position_us() if f is not None and not f.done else None

    async def set_volume(self, percent: int) -> None:
        self.volume = max(0, min(100, percent))
        f = self._feeder
        if f is not None:
            f.planner.volume = self.volume  # applies from the next note the planner generates

    # ------------------------------------------------------------------ internals
    def _connect(self) -> None:
        # pigpio.pi() prints a banner to stdout when it cannot connect; keep it out of the log.
        with contextlib.redirect_stdout(io.StringIO()):
            pi = pigpio.pi(self.host, self.port)
        if not pi.connected:
            raise OutputError(f"cannot reach pigpiod at {self.host}:{self.port}")
        try:
            # We use no callbacks, and pigpio.py's notify thread spins on a dead socket (it loops on
            # recv() returning b"" while its flag is set), which would burn a core whenever pigpiod
            # goes away while we are idle. Close the notification handle now; the thread ends when
            # the socket does.
            notify, pi._notify = pi._notify, None
            if notify is not None:
                notify.stop()
            # pigpio.py reads replies with a blocking recv: a hung pigpiod must not hang the feeder.
            pi.sl.s.settimeout(self.socket_timeout)
            pi.set_mode(self.gpio, pigpio.OUTPUT)
            pi.wave_tx_stop()
            pi.wave_clear()  # we own pigpiod's wave store; nothing is transmitting now
            pi.write(self.gpio, 0)
        except LINK_ERRORS as e:
            _release(pi, self.gpio)
            raise OutputError(f"pigpiod at {self.host}:{self.port}: {_describe(e)}") from None
        self._pi = pi
        log.info("pigpio output: GPIO%d @ %s:%d", self.gpio, self.host, self.port)

    def _report(self, finished: bool, error: str | None) -> None:
        """Called from the feeder thread: hand the news to the listener on the event loop."""
        loop, listener = self._loop, self._listener
        if error is not None:
            pi, self._pi = self._pi, None
            if pi is not None:
                _release(pi, self.gpio)
        if loop is None or listener is None or loop.is_closed():
            return
        if error is not None:
            loop.call_soon_threadsafe(listener.output_error, error)
        elif finished:
            loop.call_soon_threadsafe(listener.output_finished)


def _describe(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "no answer (timed out)"
    if isinstance(e, struct.error | ConnectionError | AttributeError):
        return "connection lost"
    return str(e) or type(e).__name__


def _release(pi: pigpio.pi, gpio: int) -> None:
    """Leave the pin low if pigpiod is still there, then drop both sockets without blocking."""
    with contextlib.suppress(*LINK_ERRORS):
        pi.wave_tx_stop()
        pi.write(gpio, 0)
    # pi.stop() clears the notify thread's flag first, then sends NC: if the socket is dead the send
    # fails but the thread still ends (pigpio.py's thread otherwise spins on a closed socket).
    try:
        pi.stop()
    except LINK_ERRORS:
        with contextlib.suppress(OSError, AttributeError):
            pi.sl.s.close()


class _Feeder(threading.Thread):
    """Streams one tune's slices into pigpiod; ends on stop, at the tune's end, or on error."""

    def __init__(self, out: PigpioOutput, pi: pigpio.pi, tune: Tune, start_us: int, at_ns: int | None) -> None:
        super().__init__(name="pigpio-feeder", daemon=True)
        self.out = out
        self.pi = pi
        self.planner = Planner(tune, out.gpio, start_us=start_us, volume=out.volume, limits=out.limits)
        self.start_us = self.planner.start_us
        self.at_ns = at_ns
        self.stop = threading.Event()
        self.started = threading.Event()
        self.error: str | None = None
        self.failed_at_start = False
        self.done = False  # set before the listener hears of the end
        self.in_flight: deque[tuple[int, Slice]] = deque()
        self._t0_ns = 0  # monotonic instant of tune time start_us
        self._anchor = 0  # DMA tick (unwrapped) at which tune time start_us plays
        self._ticks = 0
        self._raw_tick: int | None = None

    # where are we: the daemon's clock, bounded by the slice the DMA is in
    def position_us(self) -> int:
        pos = self.start_us + (time.monotonic_ns() - self._t0_ns) // 1000
        head = self.in_flight[0][1] if self.in_flight else None
        if head is not None:
            pos = min(max(pos, head.start_us), head.end_us)
        return max(self.start_us, min(pos, self.planner.end_us))

    def _send(self, sl: Slice) -> int:
        pi = self.pi
        pi.wave_add_generic([pigpio.pulse(on, off, d) for on, off, d in sl.pulses])
        wid = pi.wave_create_and_pad(self.out.limits.pad_pct)
        if len(self.in_flight) >= QUEUED or any(w == wid for w, _ in self.in_flight):
            raise OutputError(f"pigpiod handed out wave id {wid} while it is still in flight")
        pi.wave_send_using_mode(wid, pigpio.WAVE_MODE_ONE_SHOT_SYNC)
        self.in_flight.append((wid, sl))
        return wid

    def _send_lead(self) -> bool:
        """Silence until ``at_ns`` (wall clock), DMA-timed, so the tune's first instant lands on it.

        Two silent waves. The first runs until a little before the instant; when it started we only
        know to lie between the wall-clock readings taken around its WVTXM (+ the 20 µs lead-in), so
        while that bracket is too wide (a busy machine, a GC pause) we stop the still-silent wave
        and send it again. The second, queued behind it (SYNC), fills the rest exactly: how long
        building a wave took never matters, only the width of one send's bracket. Anchors the DMA
        tick and the daemon's clock on the instant; true once the lead is in flight.
        """
        assert self.at_ns is not None
        pi = self.pi
        sent: tuple[int, int, int, int] | None = None  # wave id, its µs, its start (wall ns), bracket ns
        for attempt in range(MAX_LEAD_TRIES):
            left_us = (self.at_ns - time.time_ns()) // 1000 - LEAD_IN_US
            if left_us < MIN_LEAD_US:
                break
            lead_us = left_us - min(LEAD_MARGIN_US, left_us // 2)
            pi.wave_add_generic([pigpio.pulse(0, 0, lead_us)])
            wid = pi.wave_create_and_pad(self.out.limits.pad_pct)
            t_a = time.time_ns()
            pi.wave_send_using_mode(wid, pigpio.WAVE_MODE_ONE_SHOT_SYNC)
            t_b = time.time_ns()
            if t_b - t_a <= LEAD_TOLERANCE_NS or attempt == MAX_LEAD_TRIES - 1:
                sent = (wid, lead_us, (t_a + t_b) // 2 + LEAD_IN_US * 1000, t_b - t_a)
                break
            pi.wave_tx_stop()
            pi.wave_delete(wid)
        if sent is None:
            late = time.time_ns() - self.at_ns
            if late > 0:
                log.warning("start instant already passed by %.1f ms: starting now", late / 1e6)
            return False
        wid, lead_us, began_ns, bracket_ns = sent
        if bracket_ns > LEAD_TOLERANCE_NS:
            log.warning("start placed within ±%.1f ms of its instant (a busy machine)", bracket_ns / 2e6)
        fill_us = (self.at_ns - (began_ns + lead_us * 1000)) // 1000
        ahead = max(fill_us, 0) + lead_us
        self.in_flight.append((wid, Slice(-1, self.start_us - ahead, ((0, 0, lead_us),))))
        # tick and wall clock read together: the tick at which tune time start_us plays
        tick, wall = self._tick(), time.time_ns()
        self._anchor = tick + (self.at_ns - wall) // 1000
        self._t0_ns = time.monotonic_ns() + (self.at_ns - time.time_ns())
        if fill_us > 0:
            pi.wave_add_generic([pigpio.pulse(0, 0, fill_us)])
            fid = pi.wave_create_and_pad(self.out.limits.pad_pct)
            pi.wave_send_using_mode(fid, pigpio.WAVE_MODE_ONE_SHOT_SYNC)
            self.in_flight.append((fid, Slice(-1, self.start_us - fill_us, ((0, 0, fill_us),))))
            if time.time_ns() > began_ns + lead_us * 1000:
                log.warning("start instant missed: the second lead wave was queued too late (a busy machine)")
        elif fill_us < 0:
            log.warning("start placed %.1f ms after its instant (a busy machine)", -fill_us / 1000)
        return True

    # the DMA's clock: pigpio's 32-bit µs tick, unwrapped (read at least once per slice, so a wrap
    # every 71.6 minutes is never missed)
    def _tick(self) -> int:
        raw = self.pi.get_current_tick()
        if self._raw_tick is None:
            self._ticks = raw
        else:
            self._ticks += (raw - self._raw_tick) & 0xFFFFFFFF
        self._raw_tick = raw
        return self._ticks

    def _anchor_at(self, sl: Slice) -> None:
        """``sl`` was just sent onto an idle DMA: it starts now (+ the lead-in)."""
        self._anchor = self._tick() + LEAD_IN_US - (sl.start_us - self.start_us)

    def _tick_of(self, tune_us: int) -> int:
        return self._anchor + tune_us - self.start_us

    def _dma_went_idle(self, exhausted: bool) -> None:
        """``wave_tx_at`` says idle: the tune ended, the feeder was late (underrun), or pigpiod dropped
        a SYNC-queued slice (pigpio #457). The DMA tick tells which."""
        pi = self.pi
        now = self._tick()
        played = [(w, sl) for w, sl in self.in_flight if self._tick_of(sl.end_us) <= now + DROP_TOLERANCE_US]
        lost = self.in_flight and len(played) < len(self.in_flight)
        if lost:
            unplayed = list(self.in_flight)[len(played) :]
            for wid, _ in played:
                pi.wave_delete(wid)
            shift = now - self._tick_of(unplayed[0][1].start_us)
            self.out.drops += 1
            log.warning("pigpiod dropped a queued slice (pigpio #457): resending %d, %.1f ms late",
                        len(unplayed), shift / 1000)  # fmt: skip
            pi.wave_tx_stop()  # idle already; clears the stale tail so the resend cannot self-loop
            self.in_flight.clear()
            for i, (wid, sl) in enumerate(unplayed):
                pi.wave_send_using_mode(wid, pigpio.WAVE_MODE_ONE_SHOT_SYNC)
                self.in_flight.append((wid, sl))
                if i == 0:
                    self._anchor_at(sl)
            return
        for wid, _ in self.in_flight:
            pi.wave_delete(wid)
        self.in_flight.clear()
        if not exhausted:
            self.out.underruns += 1
            log.warning("underrun: the DMA ran dry before the next slice was queued (a gap)")

    def run(self) -> None:
        pi = self.pi
        finished = False
        try:
            pi.wave_tx_stop()
            pi.write(self.out.gpio, 0)
            slices = self.planner.slices()
            exhausted = False

            def fill() -> None:
                nonlocal exhausted
                while not exhausted and len(self.in_flight) < QUEUED:
                    sl = next(slices, None)
                    if sl is None:
                        exhausted = True
                        return
                    idle = not self.in_flight
                    self._send(sl)
                    if idle:
                        self._anchor_at(sl)

            if self.at_ns is None or not self._send_lead():
                first = next(slices, None)
                if first is not None:
                    self._send(first)
                    self._anchor_at(first)
                    self._t0_ns = time.monotonic_ns() + LEAD_IN_US * 1000
                else:
                    exhausted = True
            self.started.set()
            fill()
            while True:
                if not self.in_flight and exhausted:
                    finished = True
                    break
                if self.stop.wait(self.out.poll_s):
                    break
                at = pi.wave_tx_at()
                if at == NO_TX_WAVE:
                    self._dma_went_idle(exhausted)
                elif self.in_flight[0][0] != at and any(w == at for w, _ in self.in_flight):
                    while self.in_flight[0][0] != at:
                        wid, _ = self.in_flight.popleft()
                        pi.wave_delete(wid)
                    slack = self._tick_of(self.in_flight[-1][1].end_us) - self._tick()
                    ramping = self.in_flight[-1][1].index < len(self.out.limits.ramp_us)  # short by design
                    if slack < SLACK_WARN_US and not exhausted and not ramping:
                        log.warning("feeder slack down to %.1f ms", slack / 1000)
                fill()
        except OutputError as e:
            self.error = str(e)
        except LINK_ERRORS as e:
            self.error = f"pigpiod at {self.out.host}:{self.out.port}: {_describe(e)}"
        except Exception as e:  # a bug here must still reach the player, not kill a thread silently
            log.exception("pigpio feeder failed")
            self.error = f"pigpio output failed: {type(e).__name__}: {e}"
        finally:
            if self.error is None:
                try:
                    pi.wave_tx_stop()
                    pi.write(self.out.gpio, 0)
                    for wid, _ in self.in_flight:
                        pi.wave_delete(wid)
                except LINK_ERRORS as e:
                    self.error = f"pigpiod at {self.out.host}:{self.out.port}: {_describe(e)}"
            self.in_flight.clear()
            self.done = True
            started_before = self.started.is_set()
            self.failed_at_start = self.error is not None and not started_before
            self.started.set()
            if self.error is not None:
                log.error("pigpio output: %s", self.error)
                if started_before:
                    self.out._report(False, self.error)
                else:
                    pi_, self.out._pi = self.out._pi, None
                    if pi_ is not None:
                        _release(pi_, self.out.gpio)
            elif finished and not self.stop.is_set():
                self.out._report(True, None)
