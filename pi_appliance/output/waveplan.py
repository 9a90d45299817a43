"""The wave planner: a Tune → one absolute integer-µs edge timeline → slices pigpio can take. Pure.

No sockets, clocks or GPIO here: the pigpio output streams what this yields, ``pictl render`` and the
simulator's recordings are compared against it, and the property tests check it on its own.

Timeline (research/pigpio-timing.md §1.4):

* note ``k`` starts at ``T_k = Σ_{j<k} d_j`` (integers; the running total is never rounded per note,
  so nothing drifts);
* within a tone of period ``P = 1e6/f`` (a float), cycle ``i`` rises at ``T_k + round(i·P)`` and falls
  at ``T_k + round(i·P + duty·P)``: the periods mix ⌊P⌋ and ⌈P⌉, so the mean pitch is exact and each
  period is within 1 µs of P (pitch error of one period ≤ 865.6/P cents);
* a note's last cycle is the one whose falling edge comes strictly before ``T_{k+1}``, so the pin is
  low at every note boundary, in every rest and at the end;
* volume is the duty cycle: 100 % → 50 % duty (loudest on a piezo), 0 → no edges at all while the
  timeline keeps running.

Slices: consecutive stretches of the timeline, each one pigpio wave made with ``wave_create_and_pad``.
Each pulse's delay is the time to the next absolute edge; a slice's last pulse waits until the next
slice's first instant, so slices joined back to back (ONE_SHOT_SYNC) reproduce the timeline exactly.
Every slice respects pigpio's limits (pulses per wave and per ``wave_add_generic`` message, DMA control
blocks and OOL words of a padded slot) and a maximum duration, so the feeder's memory does not depend
on the tune's length: edges are generated lazily, note by note.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pi_appliance.music import Note, Tune

# pigpiod's limits (research/pigpio-timing.md §1.1), as the planner must respect them.
PI_WAVE_MAX_PULSES = 12000  # rawWaveAddGeneric needs outPos < 12000
WVAG_MAX_PULSES = 5461  # one wave_add_generic message: 12 bytes a pulse, extension < 65536 bytes
WAVE_CBS = 23836  # DMA control blocks usable by waves
WAVE_OOL = 15958  # OOL words usable by waves
LEAD_IN_US = 20  # a wave started on an idle DMA (or non-SYNC) begins 20 µs after the send

#: One pigpio pulse: (gpio_on mask, gpio_off mask, delay µs).
Pulse = tuple[int, int, int]


def pad_cbs(pct: int) -> int:
    """Control blocks of a ``wave_create_and_pad(pct)`` slot."""
    return WAVE_CBS * pct // 100


def pad_ool(pct: int) -> int:
    """OOL words of a ``wave_create_and_pad(pct)`` slot."""
    return WAVE_OOL * pct // 100


def wave_cbs(pulses: Iterable[Pulse]) -> int:
    """DMA control blocks pigpiod uses for a wave (pigpio.c:2988; full DMA channel)."""
    n = 1  # the 20 µs lead-in delay
    for on, off, delay in pulses:
        n += (1 if on | off else 0) + (1 if delay else 0)
    return n


def wave_ool(pulses: Iterable[Pulse]) -> int:
    """OOL words (GPIO masks) pigpiod uses for a wave."""
    return sum((1 if on else 0) + (1 if off else 0) for on, off, _ in pulses)


@dataclass(frozen=True, slots=True)
class Limits:
    """How slices are cut. The defaults fit three ``wave_create_and_pad(33)`` slots in flight."""

    pad_pct: int = 33
    max_pulses: int = 3500  # per slice, a leading delay pulse included
    max_slice_us: int = 500_000  # bounds the feeder's latency budget and stop/volume latency
    # The first slices are shorter: building and uploading a full slice before the first edge took
    # ~7 ms against the simulator (a play or a knock waits for it), a 20 ms one ~1.5 ms. The next,
    # longer slices are queued while the short ones play, so nothing underruns.
    ramp_us: tuple[int, ...] = (20_000, 100_000)

    def slice_us(self, index: int) -> int:
        """The longest slice number ``index`` (0-based, of one tune's slices) may be."""
        if 0 <= index < len(self.ramp_us):
            return min(self.ramp_us[index], self.max_slice_us)
        return self.max_slice_us

    def __post_init__(self) -> None:
        if not 1 <= self.pad_pct <= 100:
            raise ValueError("pad_pct must be 1..100")
        if self.max_pulses < 2 or self.max_slice_us < 1 or any(r < 1 for r in self.ramp_us):
            raise ValueError("max_pulses must be at least 2, max_slice_us and ramp_us at least 1")
        # Worst case a pulse costs 2 CBs (mask + delay) and 1 OOL word (one gpio on or off).
        if 1 + 2 * self.max_pulses > pad_cbs(self.pad_pct) or self.max_pulses > pad_ool(self.pad_pct):
            raise ValueError(f"{self.max_pulses} pulses do not fit a {self.pad_pct}% pad")
        if self.max_pulses > min(WVAG_MAX_PULSES, PI_WAVE_MAX_PULSES - 1):
            raise ValueError("max_pulses exceeds what one wave_add_generic message or wave can hold")


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Slice:
    """One wave: ``pulses`` start at tune time ``start_us`` and last ``duration_us`` in all."""

    index: int
    start_us: int
    pulses: tuple[Pulse, ...]
    # the sum of the pulses, once: position_us (every MPD status while playing) reads it
    duration_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "duration_us", sum(p[2] for p in self.pulses))

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us


def duty_for_volume(percent: int) -> float:
    """0..100 % volume → 0..0.5 duty cycle."""
    return max(0, min(100, percent)) / 200.0


def _round(x: float) -> int:
    return math.floor(x + 0.5)


def note_edges(note: Note, t0: int, duty: float, from_us: int | None = None) -> Iterator[tuple[int, int]]:
    """The edges ``(t_us, level)`` of one note starting at ``t0``; only cycles rising at ``from_us`` or later."""
    end = t0 + note.duration_us
    if note.is_rest or duty <= 0 or note.duration_us <= 0:
        return
    period = 1e6 / note.freq_hz
    high = duty * period
    i = 0
    if from_us is not None and from_us > t0:
        i = max(0, math.floor((from_us - t0) / period) - 1)
        while t0 + _round(i * period) < from_us:
            i += 1
    while True:
        rise = t0 + _round(i * period)
        fall = t0 + _round(i * period + high)
        if fall <= rise:
            fall = rise + 1
        if fall >= end:
            return
        yield rise, 1
        yield fall, 0
        i += 1


class Planner:
    """Lazily turns a Tune (from ``start_us``) into slices for one gpio.

    ``volume`` may be changed while slices are being drawn; it applies from the next note generated.
    """

    def __init__(
        self,
        tune: Tune,
        gpio: int,
        *,
        start_us: int = 0,
        volume: int = 100,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not 0 <= gpio <= 31:
            raise ValueError("waves drive gpios 0..31 (bank 1)")
        self.tune = tune
        self.mask = 1 << gpio
        self.start_us = max(0, min(start_us, tune.duration_us))
        self.end_us = tune.duration_us
        self.volume = volume
        self.limits = limits

    def edges(self) -> Iterator[tuple[int, int]]:
        """Every edge ``(t_us, level)`` from ``start_us`` on, in tune time, strictly increasing."""
        t = 0
        for note in self.tune.notes:
            t_next = t + note.duration_us
            if t_next > self.start_us:
                yield from note_edges(note, t, duty_for_volume(self.volume), self.start_us)
            t = t_next

    def slices(self) -> Iterator[Slice]:
        """The slices covering ``[start_us, end_us)`` exactly, in order."""
        lim = self.limits
        mask = self.mask
        index = 0
        s = self.start_us
        times: list[int] = []
        levels: list[int] = []

        def close(boundary: int) -> Slice:
            pulses: list[Pulse] = []
            if not times or times[0] != s:
                pulses.append((0, 0, (times[0] if times else boundary) - s))
            for j, t in enumerate(times):
                nxt = times[j + 1] if j + 1 < len(times) else boundary
                pulses.append((mask, 0, nxt - t) if levels[j] else (0, mask, nxt - t))
            return Slice(index, s, tuple(pulses))

        for t, level in self.edges():
            while t - s >= lim.slice_us(index):
                boundary = s + lim.slice_us(index)
                yield close(boundary)
                index += 1
                s = boundary
                times.clear()
                levels.clear()
            if len(times) >= lim.max_pulses - 1 and t > s:
                yield close(t)
                index += 1
                s = t
                times.clear()
                levels.clear()
            times.append(t)
            levels.append(level)
        while self.end_us - s > lim.slice_us(index):
            boundary = s + lim.slice_us(index)
            yield close(boundary)
            index += 1
            s = boundary
            times.clear()
            levels.clear()
        if self.end_us > s:
            yield close(self.end_us)


def delay_slices(delay_us: int, start_us: int, limits: Limits = DEFAULT_LIMITS) -> Iterator[Slice]:
    """Silence of ``delay_us`` before tune time ``start_us`` (a fleet's scheduled start), as slices."""
    s = start_us - delay_us
    index = -((delay_us + limits.max_slice_us - 1) // limits.max_slice_us)
    while s < start_us:
        d = min(limits.max_slice_us, start_us - s)
        yield Slice(index, s, ((0, 0, d),))
        s += d
        index += 1


def timeline(tune: Tune, *, start_us: int = 0, volume: int = 100) -> list[tuple[int, int]]:
    """All edges as a list (for tests, rendering and the bench; the feeder never materialises this)."""
    return list(Planner(tune, 0, start_us=start_us, volume=volume).edges())


def slice_problems(sl: Slice, limits: Limits = DEFAULT_LIMITS) -> list[str]:
    """What, if anything, in one slice breaks a pigpio limit (empty when it is fine)."""
    problems = []
    n = len(sl.pulses)
    if n == 0:
        problems.append("empty slice")
    if n > limits.max_pulses or n > WVAG_MAX_PULSES or n >= PI_WAVE_MAX_PULSES:
        problems.append(f"{n} pulses")
    if wave_cbs(sl.pulses) > pad_cbs(limits.pad_pct):
        problems.append(f"{wave_cbs(sl.pulses)} CBs > {pad_cbs(limits.pad_pct)}")
    if wave_ool(sl.pulses) > pad_ool(limits.pad_pct):
        problems.append(f"{wave_ool(sl.pulses)} OOL > {pad_ool(limits.pad_pct)}")
    if sl.duration_us > limits.slice_us(sl.index):
        problems.append(f"lasts {sl.duration_us} µs > {limits.slice_us(sl.index)}")
    if any(p[2] <= 0 for p in sl.pulses):
        problems.append("a pulse with no delay")
    return problems
