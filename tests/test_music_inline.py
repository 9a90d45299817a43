"""parse_tune's format detection, the inline URIs (rtttl:, beep:) and format_inline."""

from __future__ import annotations

import contextlib
import io

import mido
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pi_appliance.music import (
    Note,
    Tune,
    TuneError,
    detect_format,
    format_inline,
    parse_beep,
    parse_inline,
    parse_rtttl,
    parse_tune,
)


def test_detection() -> None:
    assert detect_format("Tune:d=4,o=5,b=100:c") == "rtttl"
    assert detect_format("beep -f 440") == "beep"
    assert detect_format("  -f 440 -l 100") == "beep"
    assert detect_format("beep") == "beep"
    assert detect_format("beep:d=4:c") == "rtttl"  # a tune named beep
    assert detect_format("1101 0") == "knock"
    assert detect_format(b"MThd\x00\x00\x00\x06") == "midi"
    assert detect_format(b"Tune:d=4:c") == "rtttl"
    assert parse_tune("Tune:d=4,o=5,b=100:c").source_format == "rtttl"
    assert parse_tune(b"beep -f 300").source_format == "beep"
    assert parse_tune("-f 300", "beep").notes == (Note(300.0, 200_000),)


def test_explicit_format_wins_and_unknown_format() -> None:
    with pytest.raises(TuneError):
        parse_tune("1101", "rtttl")  # not RTTTL, even though knock would read it
    with pytest.raises(TuneError) as ei:
        parse_tune("x", "abc")
    assert "unknown tune format" in ei.value.message


def test_parse_inline() -> None:
    assert parse_inline("rtttl:A:d=4,o=5,b=60:a") == parse_rtttl("A:d=4,o=5,b=60:a")
    assert parse_inline("beep:-f 1000 -l 10") == parse_beep("-f 1000 -l 10")
    assert parse_inline("RTTTL:A:d=4:c") is not None
    for uri in ("builtin/01-demo.rtttl", "tunes/x.rtttl", "http://x", "", "rtttl", "knock:1101"):
        assert parse_inline(uri) is None


def test_parse_inline_positions_point_into_the_uri() -> None:
    uri = "rtttl:A:d=4:c,zz"
    with pytest.raises(TuneError) as ei:
        parse_inline(uri)
    assert ei.value.position == uri.index("zz")
    uri = "beep:-f 0"
    with pytest.raises(TuneError) as ei:
        parse_inline(uri)
    assert ei.value.position == uri.index("0")


def test_format_inline_prefers_rtttl() -> None:
    tune = parse_rtttl("Ode:d=4,o=5,b=120:e,e,f,g")
    assert format_inline(tune) == "rtttl:Ode:d=4,o=5,b=120:e,e,f,g"
    beepish = Tune("t", (Note(1000.5, 10_000), Note(0.0, 5_000)))
    assert format_inline(beepish) == "beep:-f1000.5 -l10 -D5"
    assert parse_inline(format_inline(beepish)).notes == beepish.notes  # type: ignore[union-attr]


def test_a_midi_file_travels_as_text() -> None:
    """What pictl does: parse MIDI locally, send an inline URI, the daemon parses it back."""
    mf = mido.MidiFile(ticks_per_beat=96)
    track = mido.MidiTrack()
    mf.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=437_000))
    for k, p in enumerate([60, 62, 64, 65, 67]):
        track.append(mido.Message("note_on", note=p, velocity=80, time=0 if k == 0 else 7))
        track.append(mido.Message("note_off", note=p, velocity=0, time=41 + k))
    buf = io.BytesIO()
    mf.save(file=buf)
    tune = parse_tune(buf.getvalue())
    uri = format_inline(tune)
    back = parse_inline(uri)
    assert back is not None
    assert [n.freq_hz for n in back.notes] == [n.freq_hz for n in tune.notes]
    assert abs(back.duration_us - tune.duration_us) <= 500


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_tune_on_any_text_raises_only_tune_errors(text: str) -> None:
    try:
        parse_tune(text)
    except TuneError as e:
        assert e.position is None or 0 <= e.position <= len(text.encode())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_parse_tune_on_any_bytes_raises_only_tune_errors(data: bytes) -> None:
    for blob in (data, b"MThd" + data):
        with contextlib.suppress(TuneError):  # anything else fails the test
            parse_tune(blob)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_parse_inline_on_any_uri(uri: str) -> None:
    for scheme in ("rtttl:", "beep:", ""):
        try:
            parse_inline(scheme + uri)
        except TuneError as e:
            assert e.position is not None and e.position >= len(scheme)
