"""The simulated Pi behind the socket: gpio levels, pigpiod's wave store and a DMA engine on a clock.

Everything pigpiod does that the outputs and ``pigs`` basics rely on, with pigpiod's error codes and
limits (research/pigpio-timing.md §1-2): the wave store with its control-block (CB) and OOL
accounting, ``wave_create_and_pad`` slots, exact-size reuse and top-delete garbage collection; the
20 µs lead-in on an idle or non-SYNC start and none across SYNC joins; the SYNC self-loop hazard
(pigpio #457); chains with their 600-CB, 20-counter and 10-nesting limits; hardware PWM killing
waves. Where real pigpiod would corrupt itself (a 251st wave id, deleting or clearing waves the DMA is
still reading) the simulator answers with a clear error or records a fault instead.

Time is integer µs on a :class:`Clock`: :class:`RealClock` (real time) or :class:`VirtualClock`
(advanced by ``advance()``, and by ``poll_step_us`` on each ``wave_tx_at``/``wave_tx_busy`` poll, so
a feeder that polls in a tight loop sees a DMA that moves ``poll_step_us`` between its polls). Edges
are computed from the wave schedule, never from when Python gets round to it, so they are exact in
both modes. Thread-safety: every public method takes ``self.lock``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

log = logging.getLogger("pi_appliance.sim")

# pigpiod constants (pigpio.h, pigpio.c at v79)
PI_WAVE_MAX_PULSES = 12000
PI_WAVE_MAX_MICROS = 1_800_000_000
PI_MAX_WAVES = 250
NUM_WAVE_CBS = 25016  # what WVSC 2 reports
WAVE_CBS = 23836  # usable by waves (the first 10 pages are kept for chains)
WAVE_OOL = 15958
WAVE_OOL_TOTAL = 16748
CHAIN_CBS = 600
CHAIN_COUNTERS = 20
CHAIN_NESTING = 10
LEAD_IN_US = 20
PIGPIO_VERSION = 79
HW_REVISION = 0xA02082  # a Pi 3B
DEFAULT_PERMITTED = 0x0FFFFFFC  # user gpios 2..27 on a 40-pin board (pigpiod's default)
WAVE_NOT_FOUND = 9998
NO_TX_WAVE = 9999
HW_PWM_GPIOS = {12: 0, 13: 1, 18: 0, 19: 1, 40: 0, 41: 1, 45: 1, 52: 0, 53: 1}

# error codes
PI_BAD_USER_GPIO = -2
PI_BAD_GPIO = -3
PI_BAD_MODE = -4
PI_BAD_LEVEL = -5
PI_BAD_DUTYCYCLE = -8
PI_BAD_DUTYRANGE = -21
PI_NO_HANDLE = -24
PI_BAD_HANDLE = -25
PI_BAD_WAVE_MODE = -33
PI_TOO_MANY_PULSES = -36
PI_NOT_PERMITTED = -41
PI_SOME_PERMITTED = -42
PI_BAD_WVSC_COMMND = -43
PI_BAD_WVSM_COMMND = -44
PI_BAD_WVSP_COMMND = -45
PI_BAD_WAVE_ID = -66
PI_TOO_MANY_CBS = -67
PI_TOO_MANY_OOL = -68
PI_EMPTY_WAVEFORM = -69
PI_NO_WAVEFORM_ID = -70
PI_BAD_PARAM = -81
PI_UNKNOWN_COMMAND = -88
PI_NOT_PWM_GPIO = -92
PI_NOT_HPWM_GPIO = -95
PI_BAD_HPWM_FREQ = -96
PI_BAD_HPWM_DUTY = -97
PI_CHAIN_LOOP_CNT = -113
PI_BAD_CHAIN_LOOP = -114
PI_CHAIN_COUNTER = -115
PI_BAD_CHAIN_CMD = -116
PI_CHAIN_NESTING = -118
PI_CHAIN_TOO_BIG = -119
PI_DEPRECATED = -120
PI_BAD_FOREVER = -124

PWM_FREQS_S5 = (8000, 4000, 2000, 1600, 1000, 800, 500, 400, 320, 250, 200, 160, 100, 80, 50, 40, 20, 10)

Pulse = tuple[int, int, int]


class Clock:
    """µs since tick 0, and the wall-clock instant of tick 0."""

    wall0_ns: int

    def now(self) -> int:
        raise NotImplementedError

    def on_poll(self) -> None:
        """Called on each wave_tx_at/wave_tx_busy poll."""


class RealClock(Clock):
    def __init__(self) -> None:
        self._mono0 = time.monotonic_ns()
        self.wall0_ns = time.time_ns()

    def now(self) -> int:
        return (time.monotonic_ns() - self._mono0) // 1000


class VirtualClock(Clock):
    def __init__(self, poll_step_us: int = 10_000) -> None:
        self.t = 0
        self.poll_step_us = poll_step_us
        self.wall0_ns = time.time_ns()

    def now(self) -> int:
        return self.t

    def advance(self, us: int) -> None:
        self.t += us

    def on_poll(self) -> None:
        self.t += self.poll_step_us


@dataclass
class Wave:
    pulses: tuple[Pulse, ...]
    cbs: int  # slot size (padded) in CBs
    ool: int
    micros: int
    deleted: bool = False


def wave_cbs(pulses: tuple[Pulse, ...]) -> int:
    return 1 + sum((1 if on | off else 0) + (1 if d else 0) for on, off, d in pulses)


def wave_ool(pulses: tuple[Pulse, ...]) -> int:
    return sum((1 if on else 0) + (1 if off else 0) for on, off, _ in pulses)


@dataclass
class Segment:
    """Something the DMA runs: one wave (maybe repeating) or a chain, as a stream of pulses."""

    wid: int
    pulses: Iterator[Pulse]
    t: int  # time of the next pulse
    start: int
    sent: int
    repeat: bool = False
    stop_after_cycle: bool = False  # a SYNC wave was queued behind this repeating one
    pending: Pulse | None = None
    chain: bool = False
    uses: frozenset[int] = frozenset()  # the waves a chain plays


class SimError(Exception):
    """Raised into the server to close a connection as pigpiod would (e.g. extension ≥ 65536)."""


class Simulator:
    """A pigpiod in a box. ``command(cmd, p1, p2, ext)`` answers one request with pigpiod's result."""

    def __init__(
        self,
        clock: Clock | None = None,
        *,
        permitted: int = DEFAULT_PERMITTED,
        keep_edges: int | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        self.lock = threading.RLock()
        self.permitted = permitted
        self.levels = 0  # output latch of gpios 0..53
        self.modes: dict[int, int] = {}
        self.pwm: dict[int, tuple[int, int, int]] = {}  # gpio -> (duty, range, freq)
        self.hw_pwm: dict[int, tuple[int, int]] = {}
        # wave store
        self._build: list[tuple[int, int, int]] = []  # (t, on, off) events of the wave being built
        self._build_end = 0
        self.waves: list[Wave | None] = []
        self.high_pulses = 0
        self.high_micros = 0
        self.high_cbs = 0
        self.high_live_waves = 0  # the most wave ids ever live at once
        # DMA
        self.queue: deque[Segment] = deque()
        self.tail_wid: int | None = None  # waveEndPtr's wave; cleared only by WVCLR and WVHLT
        self.segments: deque[tuple[int, int, int, int]] = deque(maxlen=100_000)  # wid, sent, start, end
        self.faults: list[str] = []
        self.underruns = 0  # SYNC sends that found the DMA idle after an earlier wave (a gap)
        self.sync_sends = 0
        self.drop_sync_sends: set[int] = set()  # fault injection: drop these SYNC sends (1-based)
        self.dropped = 0
        self._detached = False
        # recording
        self.keep_edges = keep_edges  # None = keep all, 0 = none, n = keep the first n
        self._e_t = array("q")
        self._e_g = array("B")
        self._e_l = array("B")
        self.sinks: list[Callable[[int, int, int], None]] = []
        self.segment_sinks: list[Callable[[int, int, int, int], None]] = []
        # notifications
        self._handles: dict[int, Notifier] = {}

    # ---------------------------------------------------------------- time and edges
    def now(self) -> int:
        return self.clock.now()

    def wall_ns_of_tick(self, t_us: int) -> int:
        """The ``time.time_ns()`` instant of tick ``t_us`` (exact for the real clock)."""
        return self.clock.wall0_ns + t_us * 1000

    def advance(self, us: int = 0) -> None:
        """Virtual clock: move time on by ``us``; either clock: run the DMA up to now."""
        with self.lock:
            if us:
                if not isinstance(self.clock, VirtualClock):
                    raise RuntimeError("only a virtual clock can be advanced")
                self.clock.advance(us)
            self._run_dma(self.now())

    def edges(self, gpio: int) -> list[tuple[int, int]]:
        """Recorded edges ``(tick_us, level)`` of one gpio."""
        with self.lock:
            return [(t, lv) for t, g, lv in zip(self._e_t, self._e_g, self._e_l, strict=True) if g == gpio]

    def _set_levels(self, t: int, on: int, off: int) -> None:
        changed_on = on & ~self.levels
        changed_off = off & self.levels & ~on
        if not (changed_on | changed_off):
            return
        self.levels = (self.levels | on) & ~changed_off
        for mask, level in ((changed_on, 1), (changed_off, 0)):
            while mask:
                bit = mask & -mask
                mask ^= bit
                self._record(t, bit.bit_length() - 1, level)

    def _record(self, t: int, gpio: int, level: int) -> None:
        keep = self.keep_edges
        if keep is None or len(self._e_t) < keep:
            self._e_t.append(t)
            self._e_g.append(gpio)
            self._e_l.append(level)
        for sink in self.sinks:
            sink(t, gpio, level)
        for n in self._handles.values():
            n.report(t, gpio, self.levels)

    # ---------------------------------------------------------------- the DMA engine
    def _next_pulse(self, seg: Segment) -> Pulse | None:
        p = next(seg.pulses, None)
        if p is None and seg.repeat and not seg.stop_after_cycle:
            w = self.waves[seg.wid] if seg.wid < len(self.waves) else None
            if w is not None and w.micros > 0:
                seg.pulses = iter(w.pulses)
                p = next(seg.pulses, None)
        return p

    def _run_dma(self, now: int) -> None:
        while self.queue:
            seg = self.queue[0]
            while True:
                if seg.pending is None:
                    seg.pending = self._next_pulse(seg)
                    if seg.pending is None:
                        break
                if seg.t > now:
                    return
                on, off, delay = seg.pending
                seg.pending = None
                self._set_levels(seg.t, on, off)
                seg.t += delay
            if seg.t > now:
                return  # the last delay is still running
            self.queue.popleft()
            self._log_segment(seg)
            if self.queue:
                nxt = self.queue[0]
                nxt.start = nxt.t = seg.t

    def _log_segment(self, seg: Segment) -> None:
        rec = (seg.wid, seg.sent, seg.start, seg.t)
        self.segments.append(rec)
        for sink in self.segment_sinks:
            sink(*rec)

    def _kill_dma(self, now: int) -> None:
        self._run_dma(now)
        while self.queue:
            seg = self.queue.popleft()
            seg.t = max(min(seg.t, now), seg.start)
            self._log_segment(seg)

    def _start(self, seg: Segment, now: int) -> None:
        self._detached = False
        seg.start = seg.t = now + LEAD_IN_US
        self.queue.append(seg)

    def _wave_in_use(self, wid: int) -> bool:
        return any(s.wid == wid or wid in s.uses for s in self.queue)

    def busy(self) -> bool:
        return bool(self.queue)

    # ---------------------------------------------------------------- commands
    def command(self, cmd: int, p1: int, p2: int, ext: bytes = b"") -> int:
        handler = _COMMANDS.get(cmd)
        with self.lock:
            self._run_dma(self.now())
            if handler is None:
                return PI_UNKNOWN_COMMAND
            return handler(self, p1, p2, ext)

    def _gpio_ok(self, gpio: int, write: bool = True) -> int:
        if not 0 <= gpio <= 53:
            return PI_BAD_GPIO
        if write and gpio <= 31 and not self.permitted >> gpio & 1:
            return PI_NOT_PERMITTED
        return 0

    def cmd_modes(self, gpio: int, mode: int, ext: bytes) -> int:
        if (err := self._gpio_ok(gpio)) < 0:
            return err
        if not 0 <= mode <= 7:
            return PI_BAD_MODE
        self.modes[gpio] = mode
        return 0

    def cmd_modeg(self, gpio: int, _: int, ext: bytes) -> int:
        if not 0 <= gpio <= 53:
            return PI_BAD_GPIO
        return self.modes.get(gpio, 0)

    def cmd_read(self, gpio: int, _: int, ext: bytes) -> int:
        if not 0 <= gpio <= 53:
            return PI_BAD_GPIO
        return self.levels >> gpio & 1

    def cmd_write(self, gpio: int, level: int, ext: bytes) -> int:
        if (err := self._gpio_ok(gpio)) < 0:
            return err
        if level not in (0, 1):
            return PI_BAD_LEVEL
        self.modes[gpio] = 1  # pigpiod's gpioWrite switches the gpio to output
        self.pwm.pop(gpio, None)
        bit = 1 << gpio
        self._set_levels(self.now(), bit if level else 0, 0 if level else bit)
        return 0

    def cmd_pwm(self, gpio: int, duty: int, ext: bytes) -> int:
        if gpio > 31:
            return PI_BAD_USER_GPIO
        if (err := self._gpio_ok(gpio)) < 0:
            return err
        _, rng, freq = self.pwm.get(gpio, (0, 255, 800))
        if not 0 <= duty <= rng:
            return PI_BAD_DUTYCYCLE
        self.pwm[gpio] = (duty, rng, freq)
        self.modes[gpio] = 1
        return 0

    def cmd_prs(self, gpio: int, rng: int, ext: bytes) -> int:
        if gpio > 31:
            return PI_BAD_USER_GPIO
        if not 25 <= rng <= 40000:
            return PI_BAD_DUTYRANGE
        duty, _, freq = self.pwm.get(gpio, (0, 255, 800))
        self.pwm[gpio] = (duty, rng, freq)
        return 1_000_000 // (5 * freq)  # the real range at -s 5

    def cmd_pfs(self, gpio: int, freq: int, ext: bytes) -> int:
        if gpio > 31:
            return PI_BAD_USER_GPIO
        nearest = min(PWM_FREQS_S5, key=lambda f: abs(f - freq))
        duty, rng, _ = self.pwm.get(gpio, (0, 255, 800))
        self.pwm[gpio] = (duty, rng, nearest)
        return nearest

    def cmd_gdc(self, gpio: int, _: int, ext: bytes) -> int:
        if gpio not in self.pwm:
            return PI_NOT_PWM_GPIO
        return self.pwm[gpio][0]

    def cmd_br1(self, *_: object) -> int:
        return self.levels & 0xFFFFFFFF

    def cmd_tick(self, *_: object) -> int:
        return self.now() & 0xFFFFFFFF

    def cmd_hwver(self, *_: object) -> int:
        return HW_REVISION

    def cmd_pigpv(self, *_: object) -> int:
        return PIGPIO_VERSION

    # notifications: the handle is made here; the server turns the socket into a report stream
    def open_notifier(self, sender: Callable[[bytes], None]) -> int:
        with self.lock:
            for h in range(32):
                if h not in self._handles:
                    self._handles[h] = Notifier(h, sender)
                    return h
            return PI_NO_HANDLE

    def close_notifier(self, handle: int) -> int:
        with self.lock:
            return 0 if self._handles.pop(handle, None) is not None else PI_BAD_HANDLE

    def cmd_nb(self, handle: int, bits: int, ext: bytes) -> int:
        n = self._handles.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.bits = bits
        n.paused = False
        return 0

    def cmd_np(self, handle: int, _: int, ext: bytes) -> int:
        n = self._handles.get(handle)
        if n is None:
            return PI_BAD_HANDLE
        n.paused = True
        return 0

    def cmd_nc(self, handle: int, _: int, ext: bytes) -> int:
        n = self._handles.pop(handle, None)
        if n is None:
            return PI_BAD_HANDLE
        n.closed = True
        return 0

    def cmd_no(self, *_: object) -> int:
        return PI_NO_HANDLE  # pipe notifications (/dev/pigpioN) are not simulated; NOIB is

    # waves: building
    def cmd_wvclr(self, *_: object) -> int:
        if self.queue:
            self.faults.append("wave_clear while the DMA is transmitting (real pigpiod frees CBs in use)")
            self._kill_dma(self.now())
        self._build.clear()
        self._build_end = 0
        self.waves.clear()
        self.tail_wid = None
        return 0

    def cmd_wvnew(self, *_: object) -> int:
        self._build.clear()
        self._build_end = 0
        return 0

    def cmd_wvag(self, _p1: int, _p2: int, ext: bytes) -> int:
        n = len(ext) // 12
        pulses = [
            (int.from_bytes(ext[i : i + 4], "little"), int.from_bytes(ext[i + 4 : i + 8], "little"),
             int.from_bytes(ext[i + 8 : i + 12], "little"))
            for i in range(0, n * 12, 12)
        ]  # fmt: skip
        masked = False
        perm = self.permitted
        events: dict[int, list[int]] = {}
        for t, on, off in self._build:
            events[t] = [on, off]
        t = 0
        for on, off, delay in pulses:
            if (on | off) & ~perm:
                masked = True
                on &= perm
                off &= perm
            e = events.setdefault(t, [0, 0])
            e[0] |= on
            e[1] |= off
            t += delay
        end = max(self._build_end, t)
        merged = sorted((t, on, off) for t, (on, off) in events.items())
        count = len(merged) + (1 if merged and merged[0][0] != 0 else 0)
        if count >= PI_WAVE_MAX_PULSES:
            return PI_TOO_MANY_PULSES
        self._build = merged
        self._build_end = end
        self.high_pulses = max(self.high_pulses, count)
        self.high_micros = max(self.high_micros, end)
        return PI_SOME_PERMITTED if masked else count

    def _built_pulses(self) -> tuple[Pulse, ...]:
        out = []
        ev = self._build
        if ev and ev[0][0] != 0:
            out.append((0, 0, ev[0][0]))
        for i, (t, on, off) in enumerate(ev):
            nxt = ev[i + 1][0] if i + 1 < len(ev) else self._build_end
            out.append((on, off, nxt - t))
        return tuple(out)

    def _create(self, pct: int | None) -> int:
        pulses = self._built_pulses()
        if not pulses:
            return PI_EMPTY_WAVEFORM
        need_cbs, need_ool = wave_cbs(pulses), wave_ool(pulses)
        if pct is None:
            slot_cbs, slot_ool = need_cbs, need_ool
        else:
            slot_cbs, slot_ool = WAVE_CBS * pct // 100, WAVE_OOL * pct // 100
            if need_cbs > slot_cbs:
                return PI_TOO_MANY_CBS
            if need_ool > slot_ool:
                return PI_TOO_MANY_OOL
        micros = sum(p[2] for p in pulses)
        wave = Wave(pulses, slot_cbs, slot_ool, micros)
        # reuse a deleted wave of exactly the same size
        for wid, w in enumerate(self.waves):
            if w is not None and w.deleted and w.cbs == slot_cbs and w.ool == slot_ool:
                if self._wave_in_use(wid):
                    self.faults.append(f"wave {wid} rebuilt while the DMA still reads it")
                self.waves[wid] = wave
                self._count_live()
                self._build.clear()
                self._build_end = 0
                return wid
        used_cbs = sum(w.cbs for w in self.waves if w is not None)
        used_ool = sum(w.ool for w in self.waves if w is not None)
        if used_cbs + slot_cbs > WAVE_CBS:
            return PI_TOO_MANY_CBS
        if used_ool + slot_ool > WAVE_OOL:
            return PI_TOO_MANY_OOL
        if len(self.waves) >= PI_MAX_WAVES:
            # real pigpiod's check never fires (wid is still -1): it would write past waveInfo[250]
            self.faults.append("a 251st live wave id: real pigpiod would corrupt its memory here")
            return PI_NO_WAVEFORM_ID
        self.waves.append(wave)
        self.high_cbs = max(self.high_cbs, used_cbs + slot_cbs)
        self._count_live()
        self._build.clear()
        self._build_end = 0
        return len(self.waves) - 1

    def _count_live(self) -> None:
        self.high_live_waves = max(self.high_live_waves, sum(1 for w in self.waves if w and not w.deleted))

    def cmd_wvcre(self, *_: object) -> int:
        return self._create(None)

    def cmd_wvcap(self, pct: int, _p2: int, ext: bytes) -> int:
        if not 0 <= pct <= 100:
            return PI_BAD_PARAM
        return self._create(pct)

    def _wave(self, wid: int) -> Wave | None:
        if 0 <= wid < len(self.waves):
            w = self.waves[wid]
            if w is not None and not w.deleted:
                return w
        return None

    def cmd_wvdel(self, wid: int, _: int, ext: bytes) -> int:
        if self._wave(wid) is None:
            return PI_BAD_WAVE_ID
        if self._wave_in_use(wid):
            self.faults.append(f"wave {wid} deleted while the DMA still reads it")
        w = self.waves[wid]
        assert w is not None
        w.deleted = True
        # free the top ids (and the deleted ones right below)
        while self.waves and (self.waves[-1] is None or self.waves[-1].deleted):
            self.waves.pop()
        return 0

    def cmd_wvsm(self, sub: int, _: int, ext: bytes) -> int:
        vals = {0: self._build_end, 1: self.high_micros, 2: PI_WAVE_MAX_MICROS}
        return vals.get(sub, PI_BAD_WVSM_COMMND)

    def cmd_wvsp(self, sub: int, _: int, ext: bytes) -> int:
        vals = {0: len(self._built_pulses()), 1: self.high_pulses, 2: PI_WAVE_MAX_PULSES}
        return vals.get(sub, PI_BAD_WVSP_COMMND)

    def cmd_wvsc(self, sub: int, _: int, ext: bytes) -> int:
        cur = wave_cbs(self._built_pulses()) if self._build else 0
        vals = {0: cur, 1: self.high_cbs, 2: NUM_WAVE_CBS}
        return vals.get(sub, PI_BAD_WVSC_COMMND)

    # waves: sending
    def _send(self, wid: int, mode: int) -> int:
        w = self._wave(wid)
        if w is None:
            return PI_BAD_WAVE_ID
        if mode not in (0, 1, 2, 3):
            return PI_BAD_WAVE_MODE
        now = self.now()
        repeat = mode in (1, 3)
        self.hw_pwm.clear()  # waves and hardware PWM share the PWM peripheral
        seg = Segment(wid, iter(w.pulses), 0, 0, now, repeat=repeat)
        if mode < 2:
            self._kill_dma(now)
            self._start(seg, now)
        else:
            if wid == self.tail_wid:
                # pigpio #457: patching the tail's next pointer onto itself loops the wave forever
                self.faults.append(f"SYNC send of wave {wid}, the current tail: it loops forever")
                seg.repeat = True
                if self.queue and self.queue[-1].wid == wid:
                    self.queue[-1].repeat = True
                    self.tail_wid = wid
                    return w.cbs
            self.sync_sends += 1
            if self.queue and (self._detached or self.sync_sends in self.drop_sync_sends):
                # pigpio #457 b: the DMA had already fetched the tail's last CB when its next pointer
                # was patched: this wave never runs, nor does anything SYNC-queued behind it while the
                # DMA is still busy. Injected on purpose (drop_sync_sends) to test recovery.
                self.faults.append(f"SYNC send of wave {wid} dropped (pigpio #457 race)")
                self.dropped += 1
                self._detached = True
            elif self.queue:
                tail = self.queue[-1]
                if tail.repeat:
                    tail.stop_after_cycle = True
                self.queue.append(seg)
            else:
                if self.tail_wid is not None:
                    self.underruns += 1
                self._start(seg, now)
        self.tail_wid = wid
        return w.cbs

    def cmd_wvtx(self, wid: int, _: int, ext: bytes) -> int:
        return self._send(wid, 0)

    def cmd_wvtxr(self, wid: int, _: int, ext: bytes) -> int:
        return self._send(wid, 1)

    def cmd_wvtxm(self, wid: int, mode: int, ext: bytes) -> int:
        return self._send(wid, mode)

    def cmd_wvbsy(self, *_: object) -> int:
        self.clock.on_poll()
        self._run_dma(self.now())
        return 1 if self.queue else 0

    def cmd_wvtat(self, *_: object) -> int:
        self.clock.on_poll()
        self._run_dma(self.now())
        if not self.queue:
            return NO_TX_WAVE
        seg = self.queue[0]
        return seg.wid if self._wave(seg.wid) is not None or seg.chain else WAVE_NOT_FOUND

    def cmd_wvhlt(self, *_: object) -> int:
        self._kill_dma(self.now())
        self.tail_wid = None
        self._detached = False
        return 0

    def cmd_deprecated(self, *_: object) -> int:
        return PI_DEPRECATED

    def cmd_wvcha(self, _p1: int, _p2: int, ext: bytes) -> int:
        parsed = parse_chain(ext, self._wave)
        if isinstance(parsed, int):
            return parsed
        now = self.now()
        self._kill_dma(now)
        self.hw_pwm.clear()
        seg = Segment(NO_TX_WAVE, _run_chain(parsed, self), 0, 0, now, chain=True, uses=_chain_waves(parsed))
        self._start(seg, now)
        self.tail_wid = None  # the chain's final CB is the new tail; no wave id is
        return 0

    def cmd_hp(self, gpio: int, freq: int, ext: bytes) -> int:
        duty = int.from_bytes(ext[:4], "little") if len(ext) >= 4 else 0
        if gpio not in HW_PWM_GPIOS:
            return PI_NOT_HPWM_GPIO
        if (err := self._gpio_ok(gpio)) < 0:
            return err
        if freq != 0 and not 1 <= freq <= 125_000_000:
            return PI_BAD_HPWM_FREQ
        if not 0 <= duty <= 1_000_000:
            return PI_BAD_HPWM_DUTY
        self._kill_dma(self.now())  # hardware PWM stops any wave
        if freq == 0 or duty == 0:
            self.hw_pwm.pop(gpio, None)
        else:
            self.hw_pwm[gpio] = (freq, duty)
        self.modes[gpio] = 2 if gpio in (12, 13, 40, 41, 45) else 4  # ALT0 / ALT5
        return 0


class Notifier:
    """One NOIB handle: 12-byte ``<HHII`` reports (seqno, flags, tick, level) for its ``bits``."""

    def __init__(self, handle: int, sender: Callable[[bytes], None]) -> None:
        self.handle = handle
        self.bits = 0
        self.paused = False
        self.closed = False
        self.seq = 0
        self._send = sender

    def report(self, t: int, gpio: int, levels: int) -> None:
        if self.paused or not self.bits >> gpio & 1:
            return
        import struct

        self._send(struct.pack("<HHII", self.seq & 0xFFFF, 0, t & 0xFFFFFFFF, levels & 0xFFFFFFFF))
        self.seq += 1


# ------------------------------------------------------------------------------------------ chains
ChainItem = tuple  # ("w", wid) | ("d", us) | ("loop", [items], count) | ("forever", [items])


def parse_chain(data: bytes, wave: Callable[[int], Wave | None]) -> list[ChainItem] | int:
    """Parse and check a chain as gpioWaveChain does; a list of items or pigpiod's error code."""
    stack: list[list[ChainItem]] = [[]]
    cbs = 2  # the start delay and the final CB
    counters = 0
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b != 255:
            if wave(b) is None:
                return PI_BAD_WAVE_ID
            stack[-1].append(("w", b))
            cbs += 1
            i += 1
            if cbs > CHAIN_CBS:
                return PI_CHAIN_TOO_BIG
            continue
        if i + 1 >= n:
            return PI_BAD_CHAIN_CMD
        op = data[i + 1]
        if op == 0:  # loop start
            if len(stack) > CHAIN_NESTING:
                return PI_CHAIN_NESTING
            stack.append([])
            i += 2
        elif op == 1:  # loop end x y
            if i + 3 >= n:
                return PI_BAD_CHAIN_CMD
            count = data[i + 2] | data[i + 3] << 8
            if len(stack) < 2:
                return PI_BAD_CHAIN_LOOP
            body = stack.pop()
            if not body:
                return PI_BAD_CHAIN_LOOP
            if count >= 2:
                counters += 1
                cbs += 1
                if counters > CHAIN_COUNTERS:
                    return PI_CHAIN_COUNTER
            stack[-1].append(("loop", body, count))
            i += 4
        elif op == 2:  # delay x y
            if i + 3 >= n:
                return PI_BAD_CHAIN_CMD
            d = data[i + 2] | data[i + 3] << 8
            stack[-1].append(("d", d))
            cbs += 1
            i += 4
        elif op == 3:  # loop forever: must be last
            if i + 2 != n:
                return PI_BAD_FOREVER
            if len(stack) < 2:
                return PI_BAD_CHAIN_LOOP
            body = stack.pop()
            if not body:
                return PI_BAD_CHAIN_LOOP
            stack[-1].append(("forever", body))
            cbs += 1
            i += 2
        else:
            return PI_BAD_CHAIN_CMD
        if cbs > CHAIN_CBS:
            return PI_CHAIN_TOO_BIG
    if len(stack) != 1:
        return PI_BAD_CHAIN_LOOP
    return stack[0]


def _chain_waves(items: list[ChainItem]) -> frozenset[int]:
    out: set[int] = set()
    for item in items:
        if item[0] == "w":
            out.add(item[1])
        elif item[0] in ("loop", "forever"):
            out |= _chain_waves(item[1])
    return frozenset(out)


def _run_chain(items: list[ChainItem], sim: Simulator) -> Iterator[Pulse]:
    """The pulses a chain sends, lazily (loops of 65535 nested ten deep never get expanded)."""
    for item in items:
        kind = item[0]
        if kind == "w":
            w = sim.waves[item[1]] if item[1] < len(sim.waves) else None
            if w is not None:
                yield from w.pulses
        elif kind == "d":
            if item[1]:
                yield (0, 0, item[1])
        elif kind == "loop":
            for _ in range(item[2]):
                yield from _run_chain(item[1], sim)
        elif kind == "forever":
            for _ in itertools.count():
                yield from _run_chain(item[1], sim)


_COMMANDS: dict[int, Callable[[Simulator, int, int, bytes], int]] = {
    0: Simulator.cmd_modes,
    1: Simulator.cmd_modeg,
    3: Simulator.cmd_read,
    4: Simulator.cmd_write,
    5: Simulator.cmd_pwm,
    6: Simulator.cmd_prs,
    7: Simulator.cmd_pfs,
    10: Simulator.cmd_br1,
    16: Simulator.cmd_tick,
    17: Simulator.cmd_hwver,
    18: Simulator.cmd_no,
    19: Simulator.cmd_nb,
    20: Simulator.cmd_np,
    21: Simulator.cmd_nc,
    26: Simulator.cmd_pigpv,
    27: Simulator.cmd_wvclr,
    28: Simulator.cmd_wvag,
    30: Simulator.cmd_deprecated,
    31: Simulator.cmd_deprecated,
    32: Simulator.cmd_wvbsy,
    33: Simulator.cmd_wvhlt,
    34: Simulator.cmd_wvsm,
    35: Simulator.cmd_wvsp,
    36: Simulator.cmd_wvsc,
    49: Simulator.cmd_wvcre,
    50: Simulator.cmd_wvdel,
    51: Simulator.cmd_wvtx,
    52: Simulator.cmd_wvtxr,
    53: Simulator.cmd_wvnew,
    83: Simulator.cmd_gdc,
    86: Simulator.cmd_hp,
    93: Simulator.cmd_wvcha,
    100: Simulator.cmd_wvtxm,
    101: Simulator.cmd_wvtat,
    118: Simulator.cmd_wvcap,
}
CMD_NOIB = 99
CMD_NC = 21
