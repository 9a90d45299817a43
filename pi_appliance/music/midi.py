"""Standard MIDI Files via ``mido``: one monophonic line (the skyline) or a Score of voices.

- The tempo map comes from the ``set_tempo`` events of every track (default 120 bpm), so a tempo
  change in track 0 in the middle of a note in track 3 lengthens that note correctly.
- Notes of all tracks (or of one chosen ``track``, or ``channel`` 1..16) are swept in tick order,
  offs before ons at the same tick; ``note_on`` with velocity 0 is a note off; a note left on ends
  with its track. Channel 10 (General MIDI drums) is always dropped.
- The **skyline** is the highest sounding note: a new note starts when the top pitch changes or is
  struck again; a lower note struck under a held top note changes nothing; no note sounding is a rest.
- Leading and trailing silence is trimmed; ``min_note_us`` > 0 folds shorter notes and rests
  (the lower strings of a strummed chord) into the note after them (the last one: before it).
- Type 2 files and SMPTE time division are rejected, as is anything mido cannot read; the TuneError
  position is the byte offset where reading stopped (header fields: their offsets).
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import mido

from pi_appliance.music.model import MAX_DURATION_US, MAX_NOTES, Note, Score, Tune, TuneError
from pi_appliance.music.rtttl import PITCHES

MAX_MIDI_BYTES = 1024 * 1024
DRUM_CHANNEL = 9  # 0-based; "channel 10" to musicians
DEFAULT_TEMPO = 500_000  # µs per quarter note (120 bpm)


@dataclass(frozen=True, slots=True)
class _Event:
    tick: int
    on: bool
    pitch: int
    track: int
    channel: int


class _TempoMap:
    """Absolute ticks -> µs, integrating every tempo change of every track."""

    def __init__(self, changes: list[tuple[int, int]], ticks_per_beat: int) -> None:
        self.tpb = ticks_per_beat
        self.ticks = [0]
        self.us = [0.0]
        self.tempos = [DEFAULT_TEMPO]
        for tick, tempo in sorted(changes, key=lambda c: c[0]):  # stable: same tick keeps track order
            if tick == self.ticks[-1]:
                self.tempos[-1] = tempo
                continue
            self.us.append(self.us[-1] + (tick - self.ticks[-1]) * self.tempos[-1] / self.tpb)
            self.ticks.append(tick)
            self.tempos.append(tempo)

    def __call__(self, tick: int) -> float:
        i = bisect.bisect_right(self.ticks, tick) - 1
        return self.us[i] + (tick - self.ticks[i]) * self.tempos[i] / self.tpb


@dataclass(frozen=True, slots=True)
class _Midi:
    title: str
    track_names: tuple[str, ...]
    events: tuple[_Event, ...]
    tempo: _TempoMap
    n_tracks: int


def _load(data: bytes) -> _Midi:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TuneError("MIDI is a binary format: give the file's bytes", 0)
    data = bytes(data)
    if len(data) > MAX_MIDI_BYTES:
        raise TuneError(f"MIDI file larger than {MAX_MIDI_BYTES} bytes", MAX_MIDI_BYTES)
    if data[:4] != b"MThd":
        raise TuneError("not a MIDI file (no MThd header)", 0)
    if len(data) >= 14:
        fmt = int.from_bytes(data[8:10], "big")
        division = int.from_bytes(data[12:14], "big")
        if fmt == 2:
            raise TuneError("MIDI type 2 (independent sequences) is not supported", 8)
        if fmt > 2:
            raise TuneError(f"unknown MIDI file type {fmt}", 8)
        if division & 0x8000:
            raise TuneError("SMPTE time division is not supported", 12)
        if division == 0:
            raise TuneError("MIDI division of 0 ticks per beat", 12)
    bio = io.BytesIO(data)
    try:
        mid = mido.MidiFile(file=bio, clip=True)
    except Exception as e:  # mido raises OSError, EOFError, ValueError, KeyError...: all mean "bad file"
        raise TuneError(f"unreadable MIDI file: {e or type(e).__name__}", bio.tell()) from None
    tempo_changes: list[tuple[int, int]] = []
    events: list[_Event] = []
    names: list[str] = []
    for ti, track in enumerate(mid.tracks):
        tick = 0
        held: Counter[tuple[int, int]] = Counter()
        name = ""
        for msg in track:
            tick += msg.time
            kind = msg.type
            if kind == "note_on" or kind == "note_off":
                if msg.channel == DRUM_CHANNEL:
                    continue
                key = (msg.channel, msg.note)
                if kind == "note_on" and msg.velocity > 0:
                    held[key] += 1
                    events.append(_Event(tick, True, msg.note, ti, msg.channel))
                elif held[key] > 0:  # an off without an on is ignored
                    held[key] -= 1
                    events.append(_Event(tick, False, msg.note, ti, msg.channel))
            elif kind == "set_tempo":
                tempo_changes.append((tick, msg.tempo))
            elif kind == "track_name" and not name:
                name = msg.name.strip()
        for (channel, note), count in held.items():  # notes left on end with their track
            events.extend(_Event(tick, False, note, ti, channel) for _ in range(count))
        names.append(name)
    title = next((n for n in names if n), "MIDI")
    return _Midi(title, tuple(names), tuple(events), _TempoMap(tempo_changes, mid.ticks_per_beat), len(mid.tracks))


def _skyline(
    events: list[_Event], to_us: Callable[[int], float], origin_tick: int | None, min_note_us: int
) -> list[Note]:
    """Highest sounding note over time -> notes; starts at ``origin_tick`` (default: the first note)."""
    evs = sorted(events, key=lambda e: (e.tick, e.on))  # offs (False) before ons at the same tick
    segments: list[tuple[int, int | None]] = []  # (start tick, pitch or None)
    active: Counter[int] = Counter()
    top: int | None = None
    i = 0
    while i < len(evs):
        tick = evs[i].tick
        struck: set[int] = set()
        while i < len(evs) and evs[i].tick == tick:
            e = evs[i]
            if e.on:
                active[e.pitch] += 1
                struck.add(e.pitch)
            else:
                active[e.pitch] -= 1
                if active[e.pitch] <= 0:
                    del active[e.pitch]
            i += 1
        new_top = max(active) if active else None
        if new_top != top or (new_top is not None and new_top in struck):
            segments.append((tick, new_top))
            top = new_top
    if not segments:
        return []
    first_tick = segments[0][0] if origin_tick is None else origin_tick
    if origin_tick is not None and origin_tick < segments[0][0]:
        segments.insert(0, (origin_tick, None))
    raw: list[tuple[float, int]] = []
    t_prev = round(to_us(first_tick))
    for (_tick, pitch), (next_tick, _) in itertools.pairwise(segments):
        t_end = round(to_us(next_tick))  # the running time is rounded, never each note: no drift
        if t_end > t_prev:
            raw.append((0.0 if pitch is None else PITCHES[pitch], t_end - t_prev))
        t_prev = t_end
    notes: list[Note] = []
    carry = 0
    for k, (freq, dur) in enumerate(raw):
        if min_note_us and dur < min_note_us and k + 1 < len(raw):
            carry += dur  # a blip (a strummed chord's lower strings) goes to the note after it
            continue
        dur += carry
        carry = 0
        if notes and freq == 0 and notes[-1].freq_hz == 0:
            notes[-1] = Note(0.0, notes[-1].duration_us + dur)
        elif notes and min_note_us and dur < min_note_us:
            notes[-1] = Note(notes[-1].freq_hz, notes[-1].duration_us + dur)  # the last blip: backwards
        else:
            notes.append(Note(freq, dur))
    while notes and notes[-1].freq_hz == 0:
        notes.pop()
    if len(notes) > MAX_NOTES:
        raise TuneError(f"more than {MAX_NOTES} notes", MAX_NOTES)
    total = 0
    for k, n in enumerate(notes):
        total += n.duration_us
        if total > MAX_DURATION_US:
            raise TuneError(f"tune longer than {MAX_DURATION_US // 60_000_000} minutes", k)
    return notes


def _select(midi: _Midi, track: int | None, channel: int | None) -> list[_Event]:
    if track is not None and not 0 <= track < midi.n_tracks:
        raise TuneError(f"no track {track}: the file has tracks 0..{midi.n_tracks - 1}", None)
    if channel is not None:
        if not 1 <= channel <= 16:
            raise TuneError(f"MIDI channels are 1..16, got {channel}", None)
        if channel - 1 == DRUM_CHANNEL:
            raise TuneError("channel 10 holds drums, which a buzzer cannot play", None)
    return [
        e for e in midi.events if (track is None or e.track == track) and (channel is None or e.channel == channel - 1)
    ]


def parse_midi(data: bytes, *, track: int | None = None, channel: int | None = None, min_note_us: int = 0) -> Tune:
    """The skyline of the file (or of ``track``, 0-based, or ``channel``, 1..16) as one Tune."""
    midi = _load(data)
    events = _select(midi, track, channel)
    notes = _skyline(events, midi.tempo, None, min_note_us)
    if not notes:
        raise TuneError("no notes to play (drums are dropped)", None)
    title = midi.title
    if track is not None and midi.track_names[track]:
        title = midi.track_names[track]
    return Tune(title, tuple(notes), "midi")


def parse_midi_score(data: bytes, *, min_note_us: int = 0, by: str = "auto") -> Score:
    """Every voice of the file as a Score: one voice per track that has notes (``by="track"``) or per
    channel (``by="channel"``); ``"auto"`` uses tracks unless only one track has notes (type 0).

    Each voice is the skyline of its notes. All voices start at the file's first note, so voice k
    played from time 0 on appliance k stays in step with the others.
    """
    if by not in ("auto", "track", "channel"):
        raise TuneError(f"voices by 'track' or 'channel', not {by!r}", None)
    midi = _load(data)
    if not midi.events:
        raise TuneError("no notes to play (drums are dropped)", None)
    if by == "auto":
        by = "track" if len({e.track for e in midi.events}) > 1 else "channel"
    groups: dict[int, list[_Event]] = {}
    for e in midi.events:
        groups.setdefault(e.track if by == "track" else e.channel, []).append(e)
    origin = min(e.tick for e in midi.events if e.on)
    voices: list[Tune] = []
    for key in sorted(groups):
        notes = _skyline(groups[key], midi.tempo, origin, min_note_us)
        if not any(n.freq_hz for n in notes):
            continue
        name = (midi.track_names[key] or f"track {key}") if by == "track" else f"channel {key + 1}"
        voices.append(Tune(name, tuple(notes), "midi"))
    return Score(midi.title, tuple(voices))
