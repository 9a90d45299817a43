"""beep(1) argument strings with beep's semantics (research §3.1), their errors, and format_beep."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_appliance.music import MAX_DURATION_US, MAX_NOTES, Note, Tune, TuneError, format_beep, parse_beep


def notes(text: str) -> list[tuple[float, int]]:
    return [(n.freq_hz, n.duration_us // 1000) for n in parse_beep(text).notes]


def test_defaults_440hz_200ms() -> None:
    assert notes("beep") == [(440.0, 200)]
    assert notes("") == [(440.0, 200)]
    assert parse_beep("-f 1000").source_format == "beep"


def test_repetitions_delay_between_only() -> None:
    assert notes("-f 1000 -l 50 -r 3") == [(1000.0, 50), (0.0, 100), (1000.0, 50), (0.0, 100), (1000.0, 50)]
    assert notes("-f 1000 -l 50 -r 2 -d 30") == [(1000.0, 50), (0.0, 30), (1000.0, 50)]


def test_capital_d_delays_after_the_last_too() -> None:
    assert notes("-f 1000 -l 50 -r 2 -D 30") == [(1000.0, 50), (0.0, 30), (1000.0, 50), (0.0, 30)]
    # -d after -D switches back to "between only"
    assert notes("-l 50 -D 30 -d 20") == [(440.0, 50)]


def test_new_resets_every_default() -> None:
    assert notes("beep -f 1000 -l 50 -D 20 -n -f 2000 --new") == [
        (1000.0, 50),
        (0.0, 20),
        (2000.0, 200),
        (440.0, 200),
    ]


def test_attached_values_repeats_and_fractions() -> None:
    assert notes("-f440.5 -l100") == [(440.5, 100)]
    assert notes("-f 100 -f 200") == [(200.0, 200)]  # a repeated option overrides
    assert parse_beep("-f 261.63").notes[0].freq_hz == 261.63  # kept, not rounded as beep does


def test_ignored_options() -> None:
    assert notes("-e /dev/input/by-path/pcspkr --debug --verbose -f 300 --device=/dev/x") == [(300.0, 200)]


def test_zero_length_tones_are_silent_and_rests_merge() -> None:
    assert notes("-l 0 -D 300 -n -f 500 -l 10") == [(0.0, 300), (500.0, 10)]
    assert notes("-l 10 -D 5 -n -l 0 -D 7 -n -l 10") == [(440.0, 10), (0.0, 12), (440.0, 10)]


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("-f 0", 3, "above 0"),  # beep would silently play 440 Hz
        ("-f -5", 3, "above 0"),
        ("-f 20001", 3, "at most 20000"),
        ("-f abc", 3, "frequency"),
        ("-f nan", 3, "frequency"),
        ("-f inf", 3, "frequency"),
        ("-f0", 2, "above 0"),
        ("-l -1", 3, "whole number"),
        ("-l 1.5", 3, "whole number"),
        ("-l 300001", 3, "whole number"),
        ("-d x", 3, "whole number"),
        ("-D 1e3", 3, "whole number"),
        ("-r 0", 3, "at least 1"),
        ("-f 400 -s", 7, "unsupported"),
        ("-c", 0, "unsupported"),
        ("-h", 0, "unsupported"),
        ("--help", 0, "unsupported"),
        ("-v", 0, "unsupported"),
        ("-f 400 play", 7, "unsupported"),
        ("-f 400 -l", 7, "needs a value"),
        ("-l 0", 0, "no tone"),
        ("beep -f 1 -l 1 -r 300000", 15, "5000"),
    ],
)
def test_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(TuneError) as ei:
        parse_beep(text)
    assert ei.value.position == position
    assert words in ei.value.message


def test_duration_limit() -> None:
    text = " -n ".join(["-l 300000"] * 7)  # 35 minutes
    with pytest.raises(TuneError) as ei:
        parse_beep(text)
    assert "minutes" in ei.value.message and ei.value.position is not None


def test_note_limit_is_checked_while_expanding() -> None:
    ok = parse_beep(f"-l 1 -r {MAX_NOTES // 2} -d 1")
    assert len(ok.notes) == MAX_NOTES - 1
    with pytest.raises(TuneError):
        parse_beep("-l 1 -r 300000 -n -l 1 -r 300000")


def test_format_beep_examples() -> None:
    tune = Tune("t", (Note(0.0, 300_000), Note(500.5, 10_000), Note(1000.0, 20_000), Note(0.0, 5_000)))
    text = format_beep(tune)
    assert text == "-l0 -D300 -n -f500.5 -l10 -n -f1000 -l20 -D5"
    assert parse_beep(text).notes == tune.notes
    with pytest.raises(TuneError):
        format_beep(Tune("t", (Note(0.0, 1000),)))
    with pytest.raises(TuneError):
        format_beep(Tune("t", (Note(440.0, 301_000_000),)))


ms_notes = st.lists(
    st.tuples(st.sampled_from([0.0, 440.0, 261.6255653005986, 1000.5, 20000.0]), st.integers(1, 300_000)),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(ms_notes)
def test_format_beep_round_trips_whole_milliseconds(raw: list[tuple[float, int]]) -> None:
    merged: list[Note] = []
    for f, ms in raw:  # beep cannot tell two rests in a row from one
        if merged and f == 0 and merged[-1].freq_hz == 0:
            if merged[-1].duration_us // 1000 + ms > 300_000:
                continue
            merged[-1] = Note(0.0, merged[-1].duration_us + ms * 1000)
        else:
            merged.append(Note(f, ms * 1000))
    if not any(n.freq_hz for n in merged):
        return
    tune = Tune("t", tuple(merged), "x")
    if tune.duration_us > MAX_DURATION_US:
        with pytest.raises(TuneError):
            format_beep(tune)
        return
    assert parse_beep(format_beep(tune)).notes == tune.notes


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.floats(1, 20_000), st.integers(0, 2_000_000)), min_size=1, max_size=30))
def test_format_beep_rounds_on_the_running_time(raw: list[tuple[float, int]]) -> None:
    tune = Tune("t", tuple(Note(f, d) for f, d in raw), "x")
    try:
        back = parse_beep(format_beep(tune))
    except TuneError as e:
        assert "no tone" in e.message  # every tone rounded to 0 ms
        return
    assert abs(back.duration_us - tune.duration_us) <= 500  # never drifts, however many notes


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(" -fldrDnsceh0123456789.x-beep"), max_size=60))
def test_any_text_gives_a_tune_or_a_positioned_tune_error(text: str) -> None:
    try:
        parse_beep(text)
    except TuneError as e:
        assert e.position is not None and 0 <= e.position <= len(text)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["-f", "-l", "-r", "-d", "-D"]), st.text(min_size=1, max_size=8).filter(lambda v: v.split() == [v])
)
def test_any_option_value(opt: str, value: str) -> None:
    for text in (f"{opt} {value}", f"{opt}{value}"):
        try:
            parse_beep(text)
        except TuneError as e:
            assert e.position is not None


def test_unicode_and_python_only_numbers_are_refused() -> None:
    for text in ("-f \u0664\u0664\u0660", "-l \u00b2", "-f 1_000", "-f infinity", "-f 0x10", "-r \u0661"):
        with pytest.raises(TuneError):
            parse_beep(text)
    assert notes("-f 1e3 -l 5") == [(1000.0, 5)]  # %f reads exponents
