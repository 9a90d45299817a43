"""The knock pool: 0/1 ticks -> a tune, runs merged, tick length and frequency as parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_appliance.music import Note, TuneError, format_rtttl, parse_rtttl, parse_ticks, parse_tune
from pi_appliance.music.knock import DEFAULT_FREQ_HZ, MAX_TICKS


def test_runs_merge_and_silence_is_kept() -> None:
    tune = parse_ticks("0110001")
    assert tune.source_format == "knock"
    f = DEFAULT_FREQ_HZ
    assert tune.notes == (Note(0.0, 100_000), Note(f, 200_000), Note(0.0, 300_000), Note(f, 100_000))
    assert parse_ticks("1100").notes[-1] == Note(0.0, 200_000)


def test_parameters() -> None:
    tune = parse_ticks([1, 0, True, False, False], tick_ms=50, freq_hz=2000.0)
    assert tune.notes == (Note(2000.0, 50_000), Note(0.0, 50_000), Note(2000.0, 50_000), Note(0.0, 100_000))
    assert parse_ticks(b"1 1\n0").notes == (Note(DEFAULT_FREQ_HZ, 200_000), Note(0.0, 100_000))


def test_fractional_ticks_do_not_drift() -> None:
    tune = parse_ticks("10" * 1000, tick_ms=33.3333)
    assert tune.duration_us == round(2000 * 33_333.3)
    assert {n.duration_us for n in tune.notes} <= {33_333, 33_334}


def test_knock_tunes_with_the_defaults_are_rtttl() -> None:
    tune = parse_ticks("1101100")
    assert parse_rtttl(format_rtttl(tune)).notes == tune.notes


def test_detected_by_parse_tune() -> None:
    assert parse_tune("1 0 1").source_format == "knock"


@pytest.mark.parametrize(
    ("ticks", "position"),
    [
        ("1021", 2),
        ("11x", 2),
        ([1, 0, 2], 2),
        ([1, 0.5], 1),
        ([1, "1"], 1),
        ([1, None], 1),
        ("000", 0),
        ("", 0),
        ([], 0),
    ],
)
def test_bad_ticks_name_the_index(ticks: object, position: int) -> None:
    with pytest.raises(TuneError) as ei:
        parse_ticks(ticks)  # type: ignore[arg-type]
    assert ei.value.position == position


def test_bad_parameters_and_limits() -> None:
    for kwargs in ({"tick_ms": 0}, {"tick_ms": -1}, {"tick_ms": 60_001}, {"freq_hz": 0}, {"freq_hz": 20_001}):
        with pytest.raises(TuneError):
            parse_ticks("1", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TuneError) as ei:
        parse_ticks("1" * (MAX_TICKS + 1))
    assert ei.value.position == MAX_TICKS
    with pytest.raises(TuneError):  # 31 minutes of ticks
        parse_ticks("1" * 1860, tick_ms=1000)
    with pytest.raises(TuneError):  # more than 5000 runs
        parse_ticks("10" * 2600, tick_ms=1)
    with pytest.raises(TuneError):
        parse_ticks(b"1\xff")


@settings(deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=300), st.integers(1, 1000), st.floats(1, 20_000))
def test_property_runs(bits: list[bool], tick_ms: int, freq: float) -> None:
    if not any(bits):
        with pytest.raises(TuneError):
            parse_ticks(bits, tick_ms=tick_ms, freq_hz=freq)
        return
    tune = parse_ticks(bits, tick_ms=tick_ms, freq_hz=freq)
    assert tune.duration_us == len(bits) * tick_ms * 1000
    # expanding the runs gives the ticks back, and no two neighbours are alike
    back: list[bool] = []
    for n in tune.notes:
        back += [n.freq_hz != 0] * (n.duration_us // (tick_ms * 1000))
    assert back == bits
    assert all(a.freq_hz != b.freq_hz for a, b in zip(tune.notes, tune.notes[1:], strict=False))
