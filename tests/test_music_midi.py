"""MIDI via mido, on files the tests build: the skyline, the tempo map across tracks, drums,
running status (raw bytes), track/channel choice, the Score of voices, and every error path."""

from __future__ import annotations

import io
import struct

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pi_appliance.music import Note, TuneError, parse_score, parse_tune
from pi_appliance.music.midi import MAX_MIDI_BYTES, parse_midi, parse_midi_score

M = mido.Message
Meta = mido.MetaMessage


def hz(m: int) -> float:
    return 440.0 * 2.0 ** ((m - 69) / 12)


def smf(*tracks: list[mido.Message], tpb: int = 480, type: int = 1) -> bytes:
    mf = mido.MidiFile(type=type, ticks_per_beat=tpb)
    for msgs in tracks:
        mf.tracks.append(mido.MidiTrack(msgs))
    out = io.BytesIO()
    mf.save(file=out)
    return out.getvalue()


def on(note: int, time: int = 0, channel: int = 0, velocity: int = 64) -> mido.Message:
    return M("note_on", note=note, velocity=velocity, time=time, channel=channel)


def off(note: int, time: int = 0, channel: int = 0) -> mido.Message:
    return M("note_off", note=note, velocity=0, time=time, channel=channel)


def pairs(data: bytes, **kw: object) -> list[tuple[float, int]]:
    return [(n.freq_hz, n.duration_us) for n in parse_midi(data, **kw).notes]  # type: ignore[arg-type]


def test_one_note_default_tempo_and_title() -> None:
    data = smf([Meta("track_name", name="Tune"), on(69), off(69, 480)])
    tune = parse_tune(data)  # detected by its MThd header
    assert tune.source_format == "midi" and tune.title == "Tune"
    assert tune.notes == (Note(440.0, 500_000),)


def test_tempo_change_in_another_track_lengthens_a_held_note() -> None:
    conductor = [Meta("set_tempo", tempo=500_000, time=0), Meta("set_tempo", tempo=250_000, time=480)]
    melody = [on(60), off(60, 960), on(62), off(62, 480)]
    # beat 1 at 0.5 s, beat 2 at 0.25 s (the change falls mid-note), beat 3 at 0.25 s
    assert pairs(smf(conductor, melody)) == [(hz(60), 750_000), (hz(62), 250_000)]
    # the same with the tempo events in the LAST track
    assert pairs(smf(melody, conductor)) == [(hz(60), 750_000), (hz(62), 250_000)]


def test_skyline_of_overlapping_notes() -> None:
    bass = [on(48), off(48, 1920)]  # held under everything
    upper = [on(64, 480), off(64, 480), on(67), off(67, 480)]
    assert pairs(smf(bass, upper)) == [(hz(48), 500_000), (hz(64), 500_000), (hz(67), 500_000), (hz(48), 500_000)]


def test_lower_note_under_a_held_top_does_not_split_but_a_restrike_does() -> None:
    data = smf([on(72), on(60, 240), off(60, 240), off(72, 480)])
    assert pairs(data) == [(hz(72), 1_000_000)]
    restrike = smf([on(72), on(72, 240), off(72, 240), off(72, 480)])
    assert pairs(restrike) == [(hz(72), 250_000), (hz(72), 750_000)]


def test_offs_before_ons_at_the_same_tick_and_velocity_zero_is_off() -> None:
    data = smf([on(60), on(60, 480, velocity=0), on(60), off(60, 480)])
    assert pairs(data) == [(hz(60), 500_000), (hz(60), 500_000)]


def test_rests_inside_and_silence_trimmed_outside() -> None:
    data = smf([on(60, 960), off(60, 480), on(62, 480), off(62, 480), Meta("end_of_track", time=960)])
    assert pairs(data) == [(hz(60), 500_000), (0.0, 500_000), (hz(62), 500_000)]


def test_drums_are_dropped() -> None:
    data = smf(
        [on(36, channel=9), on(60), off(60, 480), off(36, 0, channel=9), on(90, 0, channel=9), off(90, 480, channel=9)]
    )
    assert pairs(data) == [(hz(60), 500_000)]
    with pytest.raises(TuneError):
        parse_midi(smf([on(36, channel=9), off(36, 480, channel=9)]))


def test_a_note_left_on_ends_with_its_track() -> None:
    data = smf([on(60), Meta("end_of_track", time=960)])
    assert pairs(data) == [(hz(60), 1_000_000)]


def test_running_status_from_raw_bytes() -> None:
    body = (
        bytes([0x00, 0x90, 60, 64])  # note on C4
        + bytes([0x83, 0x60, 60, 0])  # 480 ticks later, running status: note on vel 0 = off
        + bytes([0x00, 64, 64])  # running status: note on E4
        + bytes([0x83, 0x60, 0x80, 64, 0])  # explicit note off
        + bytes([0x00, 0xFF, 0x2F, 0x00])
    )
    data = b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(body)) + body
    assert pairs(data) == [(hz(60), 500_000), (hz(64), 500_000)]


def test_choose_track_or_channel() -> None:
    data = smf(
        [Meta("set_tempo", tempo=1_000_000)],
        [Meta("track_name", name="Lead"), on(72), off(72, 480)],
        [Meta("track_name", name="Bass"), on(48, channel=1), off(48, 960, channel=1)],
    )
    assert pairs(data) == [(hz(72), 1_000_000), (hz(48), 1_000_000)]
    assert pairs(data, track=2) == [(hz(48), 2_000_000)]
    assert parse_midi(data, track=2).title == "Bass"
    assert pairs(data, channel=1) == [(hz(72), 1_000_000)]
    assert pairs(data, channel=2) == [(hz(48), 2_000_000)]
    for kw in ({"track": 3}, {"track": -1}, {"channel": 0}, {"channel": 17}, {"channel": 10}, {"channel": 5}):
        with pytest.raises(TuneError):
            parse_midi(data, **kw)  # type: ignore[arg-type]


def test_type_0_file() -> None:
    data = smf([on(60), on(67, 0, channel=1), off(60, 480), off(67, 480, channel=1)], type=0)
    assert pairs(data) == [(hz(67), 1_000_000)]
    score = parse_midi_score(data)
    assert [v.title for v in score.voices] == ["channel 1", "channel 2"]
    assert [v.notes for v in score.voices] == [(Note(hz(60), 500_000),), (Note(hz(67), 1_000_000),)]


def test_score_voices_share_one_clock() -> None:
    data = smf(
        [Meta("track_name", name="Duet"), Meta("set_tempo", tempo=1_000_000)],
        [Meta("track_name", name="Upper"), on(72), off(72, 480), on(74), off(74, 480)],
        [Meta("track_name", name="Lower"), on(48, 480), off(48, 960)],
        [on(35, channel=9), off(35, 480, channel=9)],  # drums only: no voice
    )
    score = parse_score(data)
    assert score.title == "Duet"
    assert [v.title for v in score.voices] == ["Upper", "Lower"]
    upper, lower = score.voices
    assert upper.notes == (Note(hz(72), 1_000_000), Note(hz(74), 1_000_000))
    assert lower.notes == (Note(0.0, 1_000_000), Note(hz(48), 2_000_000))  # starts a beat later
    assert score.duration_us == 3_000_000
    assert [v.title for v in parse_midi_score(data, by="channel").voices] == ["channel 1"]
    with pytest.raises(TuneError):
        parse_midi_score(data, by="colour")


def test_min_note_folds_strummed_chords() -> None:
    # a chord strummed upwards: each string 10 ticks (~10 ms) after the other, then held
    strum = [on(60), on(64, 10), on(67, 10), off(60, 460), off(64, 0), off(67, 0)]
    data = smf(strum)
    assert len(parse_midi(data).notes) == 3
    folded = parse_midi(data, min_note_us=20_000)
    assert [n.freq_hz for n in folded.notes] == [hz(67)]
    assert folded.duration_us == parse_midi(data).duration_us


@pytest.mark.parametrize(
    ("data", "position", "words"),
    [
        (b"RIFF....", 0, "MThd"),
        (b"MThd" + struct.pack(">IHHH", 6, 2, 1, 480), 8, "type 2"),
        (b"MThd" + struct.pack(">IHHH", 6, 7, 1, 480), 8, "type"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 0xE728), 12, "SMPTE"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 0), 12, "division"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480) + b"MTrk\x00\x00\x00\x08\x00\x90\x3c", 25, "unreadable"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480) + b"XXXX\x00\x00\x00\x00", 22, "unreadable"),
        (b"MThd" + struct.pack(">IHHH", 6, 1, 1, 480) + b"MTrk\x00\x00\x00\x04\x00\x3c\x40\x00", 24, "unreadable"),
    ],
)
def test_bad_files_name_a_byte_offset(data: bytes, position: int, words: str) -> None:
    with pytest.raises(TuneError) as ei:
        parse_midi(data)
    assert ei.value.position == position, ei.value
    assert words in ei.value.message


def test_size_and_length_limits() -> None:
    with pytest.raises(TuneError) as ei:
        parse_midi(b"MThd" + b"\x00" * MAX_MIDI_BYTES)
    assert ei.value.position == MAX_MIDI_BYTES
    with pytest.raises(TuneError):  # a huge delta time: one note of many hours
        parse_midi(smf([on(60), off(60, 0x0FFFFFFF)]))
    many = [m for k in range(5001) for m in (on(60 + k % 2), off(60 + k % 2, 10))]
    with pytest.raises(TuneError):
        parse_midi(smf(many))
    with pytest.raises(TuneError):
        parse_tune("MThd as text", "midi")


@st.composite
def note_lists(draw: st.DrawFn) -> list[tuple[int, int, int]]:
    n = draw(st.integers(1, 12))
    return [(draw(st.integers(0, 400)), draw(st.integers(1, 200)), draw(st.integers(40, 90))) for _ in range(n)]


def skyline_by_brute_force(notes: list[tuple[int, int, int]], us_per_tick: int) -> list[tuple[float, int]]:
    start, end = min(s for s, _, _ in notes), max(s + d for s, d, _ in notes)
    out: list[list[float | int]] = []
    prev_top = None
    for t in range(start, end):
        active = [p for s, d, p in notes if s <= t < s + d]
        top = max(active) if active else None
        restruck = top is not None and any(s == t and p == top for s, _, p in notes)
        if out and top == prev_top and not restruck:
            out[-1][1] += us_per_tick
        else:
            out.append([0.0 if top is None else hz(top), us_per_tick])
        prev_top = top
    return [(float(f), int(d)) for f, d in out]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(note_lists())
def test_skyline_matches_a_brute_force_model(notes: list[tuple[int, int, int]]) -> None:
    events = sorted([(s, 1, p) for s, _, p in notes] + [(s + d, 0, p) for s, d, p in notes], key=lambda e: (e[0], e[1]))
    msgs, now = [], 0
    for tick, is_on, p in events:
        msgs.append(on(p, tick - now) if is_on else off(p, tick - now))
        now = tick
    data = smf(msgs, tpb=100)  # 120 bpm: 5000 µs per tick, exactly
    assert pairs(data) == skyline_by_brute_force(notes, 5000)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_files_give_a_tune_or_a_tune_error(data: st.DataObject) -> None:
    good = bytearray(smf([Meta("set_tempo", tempo=400_000)], [on(60), on(64, 100), off(60, 100), off(64, 50)]))
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.integers(0, len(good) - 1))
        good[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(good)))
    try:
        parse_midi(bytes(good[:cut]))
    except TuneError as e:
        assert e.position is not None or "no notes" in e.message
