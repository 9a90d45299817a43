"""RTTTL: the defaults and pitches every implementation uses, the real-world deviations, every error
path with its position, the limits, and the format_rtttl round trip (unit + hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pi_appliance.music import MAX_NOTES, MAX_TEXT_BYTES, Note, Tune, TuneError, format_rtttl, parse_rtttl


def hz(midi: int) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12)


def freqs(text: str) -> list[float]:
    return [n.freq_hz for n in parse_rtttl(text).notes]


def durs(text: str) -> list[int]:
    return [n.duration_us for n in parse_rtttl(text).notes]


# --- the core numbers ---------------------------------------------------------------------------


def test_a4_is_440_and_octave_numbering() -> None:
    assert freqs("t:d=4,o=4,b=60:a") == [440.0]
    assert freqs("t:d=4,o=5,b=60:a,a4,a6,c4") == [880.0, 440.0, 1760.0, pytest.approx(261.6256, abs=1e-4)]
    table = "c,c#,d,d#,e,f,f#,g,g#,a,a#,b"
    assert freqs(f"t:o=4:{table}") == [hz(60 + k) for k in range(12)]


def test_defaults_are_d4_o6_b63() -> None:
    tune = parse_rtttl("Def::a")
    assert tune.title == "Def" and tune.source_format == "rtttl"
    assert tune.notes == (Note(1760.0, round(240e6 / (63 * 4))),)
    assert parse_rtttl("Def:d=4,o=6,b=63:a") == tune


def test_durations_dots_and_tempo() -> None:
    # b=60: a quarter is one second
    assert durs("t:d=4,o=5,b=60:1c,2c,4c,8c,16c,32c,64c") == [
        4_000_000,
        2_000_000,
        1_000_000,
        500_000,
        250_000,
        125_000,
        62_500,
    ]
    assert durs("t:d=8,o=5,b=60:c,4c.,c.") == [500_000, 1_500_000, 750_000]
    assert durs("t:d=4,o=5,b=120:c") == [500_000]


def test_no_drift_over_a_long_tune() -> None:
    tune = parse_rtttl("t:d=4,o=5,b=63:" + ",".join(["c"] * 1000))
    # each note is 952 380.95 µs; rounding every note would lose 0.95 ms per note
    assert tune.duration_us == round(1000 * 240e6 / (63 * 4))
    assert {n.duration_us for n in tune.notes} == {952_381, 952_380}


def test_rests() -> None:
    tune = parse_rtttl("t:d=4,o=5,b=60:c,p,8p.,p5,c")
    assert [n.freq_hz == 0 for n in tune.notes] == [False, True, True, True, False]
    assert tune.notes[2].duration_us == 750_000


# --- the real-world deviations (research §1.3) --------------------------------------------------


@pytest.mark.parametrize(
    ("deviant", "canonical"),
    [
        ("t:d=4,o=5,b=100:16c.6,32d#.5", "t:d=4,o=5,b=100:16c6.,32d#5."),  # dot before the octave
        ("t:d=4,o=5,b=100:8f_,c_6", "t:d=4,o=5,b=100:8f#,c#6"),  # _ as sharp
        ("t:d=4,o=5,b=100:16e#6,b#", "t:d=4,o=5,b=100:16f6,c6"),  # e# and b#
        ("t:d=4,o=5,b=100:d,h.,h4", "t:d=4,o=5,b=100:d,b.,b4"),  # h for b
        ("T:D=4,O=5,B=100:8F,8F,2A#.", "T:d=4,o=5,b=100:8f,8f,2a#."),  # upper case
        ("t:d=4,o=5,b=100:c,d,", "t:d=4,o=5,b=100:c,d"),  # trailing comma
        ("t:d=4,o=5,b=100:,c,,d", "t:d=4,o=5,b=100:c,d"),  # leading and doubled commas
        ("t:b=100,o=5,d=4:c", "t:d=4,o=5,b=100:c"),  # defaults in another order
        ("t:b=100:c", "t:d=4,o=6,b=100:c"),  # a key missing
        ("t: d = 4 , o=5,\r\n b=100 :\n 8 c , d\r\n", "t:d=4,o=5,b=100:8c,d"),  # whitespace, CR/LF
        ("t:d=4,o=5,b=100,s=2,l=15,v=10:c", "t:d=4,o=5,b=100:c"),  # RTX/1.1 keys ignored
        ("t:d=4,o=5,b=63,b=100:c", "t:d=4,o=5,b=100:c"),  # last one wins
        ("t:d=2,o=2,b=960:8c4,8g3", "t:d=2,o=5,b=960:8c4,8g3"),  # odd default octave, fast tempo
        ("t:d=64,o=5,b=127:c1,c8,c", "t:d=64,o=5,b=127:c1,c8,c5"),  # 64ths, octaves 1 and 8, b off list
    ],
)
def test_deviations_read_as_their_canonical_form(deviant: str, canonical: str) -> None:
    assert parse_rtttl(deviant).notes == parse_rtttl(canonical).notes


def test_names() -> None:
    assert parse_rtttl("Bullet me: :d=4,o=5,b=112:c").title == "Bullet me:"
    assert parse_rtttl("  Castle on a Cloud  : d=4,o=5,b=90:c").title == "Castle on a Cloud"
    assert parse_rtttl(":d=4:c").title == ""
    assert parse_rtttl("A very long name indeed, longer than ten:d=4:c").title.startswith("A very long")


def test_octaves_zero_and_nine() -> None:
    assert freqs("t:o=0:c") == [hz(12)]
    assert freqs("t:o=9:b") == [hz(131)]
    assert freqs("t:o=5:c0,b9") == [hz(12), hz(131)]


def test_bytes_input() -> None:
    assert parse_rtttl(b"t:d=4,o=5,b=60:a") == parse_rtttl("t:d=4,o=5,b=60:a")
    assert parse_rtttl("Fr\u00e8re:d=4:c".encode()).title == "Fr\u00e8re"


# --- errors: always a TuneError naming the position ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "position", "words"),
    [
        ("t:d=4,o=5,b=100:c,x", 18, "cannot parse 'x'"),
        ("t:d=4,o=5,b=100:c,d,16", 20, "note 3"),  # dangling duration (a truncated tune)
        ("t:d=4,o=5,b=100:8#d4", 16, "'8#d4'"),  # sharp before the letter
        ("t:d=4,o=5,b=100:c, 8db", 19, "'8db'"),  # flats are PTTTL, not RTTTL
        ("t:d=4,o=5,b=100:16c..", 16, "two dots"),
        ("t:d=4,o=5,b=100:c.6.", 16, "two dots"),
        ("t:d=4,o=5,b=100:3c", 16, "duration"),
        ("t:d=4,o=5,b=100:c,0p", 18, "duration"),
        ("t:d=4,o=5,b=100:128c", 16, "cannot parse"),
        ("t:d=4,o=5,b=100:c,p#", 18, "rest cannot be sharp"),
        ("t:d=4,o=5,b=100:c10", 16, "cannot parse"),  # two-digit octave
        ("t:d=4,o=5,b=100:c;", 16, "cannot parse"),  # v1.1 double dot not accepted
        ("t:d=3,o=5,b=100:c", 2, "duration"),
        ("t:d=4,o=10,b=100:c", 6, "octave"),
        ("t:d=4,o=x,b=100:c", 6, "octave"),
        ("t:d=4,o=5,b=0:c", 10, "tempo"),
        ("t:d=4,o=5,b=10001:c", 10, "tempo"),
        ("t:d=4,o=5,b=Slow:c", 10, "tempo"),
        ("t:d=4,o=5,b=140Bpm:c", 10, "tempo"),
        ("t:d=4,o5,b=100:c", 6, "key=value"),
        ("t:d=4,=5:c", 6, "key=value"),
        ("t:d=4,o=5,b=100:", 16, "no notes"),
        ("t:d=4,o=5,b=100:p,8p", 16, "only rests"),
        ("t:d=4,o=5,b=100:  ,, ", 16, "no notes"),
        ("no colons here", 14, "two colons"),
        ("one:colon", 3, "two colons"),
        ("", 0, "two colons"),
    ],
)
def test_errors_name_the_position(text: str, position: int, words: str) -> None:
    with pytest.raises(TuneError) as ei:
        parse_rtttl(text)
    assert ei.value.position == position
    assert words in ei.value.message
    assert f"(at {position})" in str(ei.value)


def test_junk_is_never_a_rest() -> None:
    for junk in ("k", "x", "8z", "q5", "?", "c#b"):
        with pytest.raises(TuneError):
            parse_rtttl(f"t:d=4,o=5,b=100:c,{junk},d")


def test_note_limit() -> None:
    ok = parse_rtttl("t:d=64,o=5,b=10000:" + ",".join(["c"] * MAX_NOTES))
    assert len(ok.notes) == MAX_NOTES
    text = "t:d=64,o=5,b=10000:" + ",".join(["c"] * (MAX_NOTES + 1))
    with pytest.raises(TuneError) as ei:
        parse_rtttl(text)
    assert ei.value.position == text.rindex(",") + 1
    assert "5000" in ei.value.message


def test_duration_limit() -> None:
    # b=1: a whole note lasts 240 s; 7 of them are 28 min, 8 are 32 min > 30
    assert parse_rtttl("t:d=1,o=5,b=1:" + ",".join(["c"] * 7)).duration_s == 7 * 240
    text = "t:d=1,o=5,b=1:" + ",".join(["c"] * 9)
    with pytest.raises(TuneError) as ei:
        parse_rtttl(text)
    assert ei.value.position == len("t:d=1,o=5,b=1:") + 7 * 2
    assert "minutes" in ei.value.message


def test_size_limit() -> None:
    text = "t:d=4:" + "c," * (MAX_TEXT_BYTES // 2)
    with pytest.raises(TuneError) as ei:
        parse_rtttl(text)
    assert ei.value.position == MAX_TEXT_BYTES
    with pytest.raises(TuneError):
        parse_rtttl(text.encode())
    # multi-byte characters count as bytes
    with pytest.raises(TuneError):
        parse_rtttl("\u00e9" * (MAX_TEXT_BYTES // 2 + 1) + ":d=4:c")


def test_bad_utf8_names_the_byte() -> None:
    with pytest.raises(TuneError) as ei:
        parse_rtttl(b"ab\xffc:d=4:c")
    assert ei.value.position == 2


# --- format_rtttl -------------------------------------------------------------------------------


def test_format_simple() -> None:
    text = format_rtttl(parse_rtttl("Ode:d=4,o=5,b=120:e,e,f,g,2g,8f,e.,p"))
    assert text == "Ode:d=4,o=5,b=120:e,e,f,g,2g,8f,e.,p"


def test_format_refuses_what_rtttl_cannot_say() -> None:
    a = 440.0
    cases = [
        Tune("t", (), "x"),  # empty
        Tune("t", (Note(0.0, 500_000),), "x"),  # only rests
        Tune("t", (Note(441.0, 500_000),), "x"),  # not an equal-tempered pitch
        Tune("t", (Note(a, 500_000), Note(a, 500_001)), "x"),  # no common tempo
        Tune("t", (Note(a, 0),), "x"),  # zero length
        Tune("t", (Note(hz(132), 500_000),), "x"),  # above octave 9
        Tune("t", (Note(hz(5), 500_000),), "x"),  # below octave 0
    ]
    for tune in cases:
        with pytest.raises(TuneError):
            format_rtttl(tune)


def test_format_keeps_one_line() -> None:
    tune = Tune("two\nlines", parse_rtttl("t:d=4:c").notes, "rtttl")
    text = format_rtttl(tune)
    assert "\n" not in text
    assert parse_rtttl(text).title == "two lines"


_LINE_BREAK_CHARS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() breaks: become spaces
_DURS = (1, 2, 4, 8, 16, 32, 64)
_LETTERS = ("c", "c#", "d", "d#", "e", "f", "f#", "g", "g#", "a", "a#", "b")


@st.composite
def rtttl_texts(draw: st.DrawFn) -> str:
    """RTTTL in any spelling the parser accepts (deviations included)."""
    name = draw(
        st.text(st.characters(blacklist_characters=_LINE_BREAK_CHARS, blacklist_categories=("Cs",)), max_size=12)
    )
    d, o, b = draw(st.sampled_from(_DURS)), draw(st.integers(0, 9)), draw(st.integers(1, 10_000))
    defaults = [f"d={d}", f"o={o}", f"b={b}"]
    defaults = draw(st.permutations(defaults))
    tokens = []
    n = draw(st.integers(1, 40))
    for _ in range(n):
        dur = draw(st.sampled_from(("", *map(str, _DURS))))
        if draw(st.booleans()):
            letter = draw(st.sampled_from(_LETTERS)).replace("#", draw(st.sampled_from("#_")))
            if letter == "b" and draw(st.booleans()):
                letter = "h"
            octave = draw(st.sampled_from(("", *map(str, range(10)))))
        else:
            letter, octave = "p", ""
        dot = draw(st.sampled_from(("", "pre", "post")))
        tok = dur + letter + ("." if dot == "pre" else "") + octave + ("." if dot == "post" else "")
        tokens.append(tok.upper() if draw(st.booleans()) else tok)
    assume(any(not t.lower().lstrip("0123456789").startswith("p") for t in tokens))
    return f"{name}:{','.join(defaults)}:{','.join(tokens)}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rtttl_texts())
def test_round_trip_property(text: str) -> None:
    try:
        tune = parse_rtttl(text)
    except TuneError as e:
        assert "minutes" in e.message  # the only way a well-formed text fails: too long at a slow tempo
        return
    again = parse_rtttl(format_rtttl(tune))
    assert again.notes == tune.notes
    assert again.title == tune.title.strip()
    assert format_rtttl(again) == format_rtttl(tune)  # formatting is a fixed point


@st.composite
def expressible_tunes(draw: st.DrawFn) -> tuple[int, list[tuple[int, int | None]]]:
    bpm = draw(st.integers(1, 10_000))
    units = draw(
        st.lists(st.sampled_from((256, 128, 64, 32, 16, 8, 4, 384, 192, 96, 48, 24, 12, 6)), min_size=1, max_size=60)
    )
    pitches = draw(st.lists(st.one_of(st.none(), st.integers(12, 131)), min_size=len(units), max_size=len(units)))
    assume(any(p is not None for p in pitches))
    assume(sum(units) * 937_500 / bpm <= 30 * 60e6)
    return bpm, list(zip(units, pitches, strict=True))


@settings(max_examples=300, deadline=None)
@given(expressible_tunes())
def test_format_of_any_expressible_tune_round_trips(spec: tuple[int, list[tuple[int, int | None]]]) -> None:
    """Tunes built independently of the parser (exact timeline, equal temperament) format and come back."""
    bpm, items = spec
    notes = []
    total = 0
    prev = 0
    for u, p in items:
        total += u
        end = (total * 480_000_000 + 256 * bpm) // (512 * bpm)  # exact, half up like the parser; no drift
        notes.append(Note(0.0 if p is None else hz(p), end - prev))
        prev = end
    tune = Tune("gen", tuple(notes), "test")
    text = format_rtttl(tune)
    assert parse_rtttl(text).notes == tune.notes


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("abcdefghpABCH#_.,:=0123456789 dob\n;&-x"), max_size=80))
def test_any_text_gives_a_tune_or_a_positioned_tune_error(text: str) -> None:
    try:
        tune = parse_rtttl(text)
    except TuneError as e:
        assert e.position is not None and 0 <= e.position <= len(text)
        return
    assert any(n.freq_hz for n in tune.notes)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120))
def test_any_bytes_give_a_tune_or_a_positioned_tune_error(data: bytes) -> None:
    try:
        parse_rtttl(data)
    except TuneError as e:
        assert e.position is not None and 0 <= e.position <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 20_000), st.integers(0, 10**7)), min_size=0, max_size=20))
def test_format_either_refuses_or_round_trips(raw: list[tuple[float, int]]) -> None:
    tune = Tune("t", tuple(Note(f, d) for f, d in raw), "test")
    try:
        text = format_rtttl(tune)
    except TuneError:
        return
    assert parse_rtttl(text).notes == tune.notes


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["d", "o", "b"]), st.text(max_size=6), st.text(max_size=6))
def test_any_unicode_in_defaults_or_notes(key: str, value: str, token: str) -> None:
    """Unicode digits ('²', '٤') are not RTTTL digits: rejected with a TuneError, never a ValueError."""
    for text in (f"t:{key}={value}:c", f"t:d=4:{token}", f"t:d=4:c,{token}4"):
        try:
            parse_rtttl(text)
        except TuneError as e:
            assert e.position is not None


def test_unicode_digits_are_not_digits() -> None:
    for text in ("t:d=\u00b2:c", "t:o=\u00b2:c", "t:b=\u0664\u0664:c", "t:d=4:\u0664c", "t:d=4:c\u0664"):
        with pytest.raises(TuneError):
            parse_rtttl(text)
