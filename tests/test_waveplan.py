"""The wave planner on its own: exact timeline, limits, pin low (hypothesis property tests)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_appliance.music import Note, Tune
from pi_appliance.output import waveplan
from pi_appliance.output.waveplan import Limits, Planner

freqs = st.one_of(st.just(0.0), st.floats(min_value=20.0, max_value=20_000.0))
notes = st.builds(Note, freqs, st.integers(min_value=0, max_value=400_000))
tunes = st.lists(notes, min_size=0, max_size=12).map(lambda ns: Tune("t", tuple(ns)))
limits = st.builds(
    Limits,
    pad_pct=st.just(33),
    max_pulses=st.integers(min_value=2, max_value=3500),
    max_slice_us=st.integers(min_value=1_000, max_value=500_000),
)


def replay(slices: list[waveplan.Slice], mask: int) -> tuple[list[tuple[int, int]], int]:
    """Walk slices as the DMA would, back to back: the edges they make and the level at the end."""
    edges = []
    level = 0
    for sl in slices:
        t = sl.start_us
        for on, off, delay in sl.pulses:
            if on & mask and not level:
                level = 1
                edges.append((t, 1))
            if off & mask and level:
                level = 0
                edges.append((t, 0))
            t += delay
    return edges, level


@settings(max_examples=150, deadline=None)
@given(tunes, limits, st.integers(min_value=0, max_value=100))
def test_slices_cover_the_tune_exactly_and_respect_every_limit(tune, lim, volume):
    plan = Planner(tune, 18, volume=volume, limits=lim)
    slices = list(plan.slices())
    # total duration equals the sum of the notes, to the µs
    assert sum(s.duration_us for s in slices) == sum(n.duration_us for n in tune.notes)
    # back to back, no gap, no overlap
    t = 0
    for s in slices:
        assert s.start_us == t
        t = s.end_us
        assert waveplan.slice_problems(s, lim) == []
    edges, level = replay(slices, 1 << 18)
    assert level == 0  # the pin ends low
    assert edges == list(Planner(tune, 18, volume=volume).edges())


@settings(max_examples=150, deadline=None)
@given(tunes, st.integers(min_value=1, max_value=100))
def test_every_tone_starts_on_time_and_ends_low_before_the_next_note(tune, volume):
    edges = waveplan.timeline(tune, volume=volume)
    times = [t for t, _ in edges]
    assert times == sorted(set(times))  # strictly increasing
    assert [lvl for _, lvl in edges] == [1, 0] * (len(edges) // 2)
    t = 0
    j = 0
    for n in tune.notes:
        end = t + n.duration_us
        k = j
        while k < len(edges) and edges[k][0] < end:
            k += 1
        inside, j = edges[j:k], k
        if n.is_rest:
            assert inside == []
        elif inside:
            assert inside[0] == (t, 1)  # onset exactly at T_k
            assert inside[-1][1] == 0 and inside[-1][0] < end
        t = end


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=20.0, max_value=20_000.0), st.integers(min_value=100_000, max_value=400_000))
def test_pitch_is_exact_on_average_and_each_period_within_a_microsecond(freq, dur):
    edges = waveplan.timeline(Tune("t", (Note(freq, dur),)))
    rises = [t for t, lvl in edges if lvl]
    periods = [b - a for a, b in itertools.pairwise(rises)]
    p = 1e6 / freq
    assert all(math.floor(p) <= q <= math.ceil(p) for q in periods)
    # the mean period over the note is P to within one µs over the whole note
    assert abs((rises[-1] - rises[0]) - (len(rises) - 1) * p) <= 1
    cents = [abs(1200 * math.log2(p / q)) for q in periods]
    assert max(cents) <= 1731.2 / (p - 1)  # one period is off by under 1 µs: about 2 × 865.6/P


def test_volume_is_the_duty_cycle_and_zero_is_silence_with_the_clock_running():
    tune = Tune("t", (Note(1000.0, 10_000), Note(0.0, 5_000), Note(500.0, 4_000)))
    loud = waveplan.timeline(tune, volume=100)
    assert loud[:4] == [(0, 1), (500, 0), (1000, 1), (1500, 0)]
    quiet = waveplan.timeline(tune, volume=10)
    assert quiet[:2] == [(0, 1), (50, 0)]
    silent = list(Planner(tune, 4, volume=0).slices())
    assert sum(s.duration_us for s in silent) == 19_000
    assert all(on == 0 and off == 0 for s in silent for on, off, _ in s.pulses)


def test_seek_starts_mid_note_on_the_next_whole_cycle():
    tune = Tune("t", (Note(1000.0, 10_000), Note(2000.0, 10_000)))
    plan = Planner(tune, 4, start_us=12_345)
    edges = list(plan.edges())
    assert edges[0] == (12_500, 1)
    slices = list(plan.slices())
    assert slices[0].start_us == 12_345 and slices[0].pulses[0] == (0, 0, 155)
    assert sum(s.duration_us for s in slices) == 20_000 - 12_345


def test_long_rest_and_dense_tone_are_cut_into_limited_slices():
    tune = Tune("t", (Note(0.0, 2_600_000), Note(20_000.0, 1_000_000)))
    slices = list(Planner(tune, 18).slices())
    # the first slices follow the ramp (a fast first edge), then full-length slices
    assert [s.duration_us for s in slices[:6]] == [20_000, 100_000] + [500_000] * 4
    assert slices[6].start_us == 2_120_000
    assert slices[6].pulses[0] == (0, 0, 480_000)  # the rest's tail leads into the tone's slice
    assert all(s.duration_us <= waveplan.DEFAULT_LIMITS.slice_us(s.index) for s in slices)
    assert all(waveplan.slice_problems(s) == [] for s in slices)
    assert max(len(s.pulses) for s in slices) <= 3500


def test_planner_is_lazy_for_a_one_hour_tune():
    tune = Tune("hour", tuple(Note(440.0 * (1 + i % 7 / 7), 250_000) for i in range(14_400)))
    gen = Planner(tune, 18).slices()
    first = [next(gen) for _ in range(3)]
    assert first[0].start_us == 0 and first[2].end_us <= 1_500_000


def test_limits_refuse_slices_that_do_not_fit_a_pad():
    with pytest.raises(ValueError):
        Limits(pad_pct=10, max_pulses=3500)
    with pytest.raises(ValueError):
        Limits(pad_pct=100, max_pulses=6000)


def test_delay_slices_lead_into_the_tune():
    lead = list(waveplan.delay_slices(1_234_567, 0))
    assert sum(s.duration_us for s in lead) == 1_234_567
    assert lead[-1].end_us == 0 and all(s.pulses[0][:2] == (0, 0) for s in lead)
