"""RTTTL (Nokia Ring Tone Text Transfer Language): parse and format.

Grammar and policy follow research/music-formats.md §1.4, the lenient-but-safe reading that accepts
what real implementations play without ever turning junk into rests:

- ``name:defaults:notes``, split at the last two colons (names may contain ``:``); the name is trimmed;
- case-insensitive; whitespace (including CR/LF) inside defaults and notes is ignored;
- defaults in any order or subset, ``key=value``, last one wins, unknown keys (``s=``, ``l=``, ``v=``)
  ignored; ``d`` in {1,2,4,8,16,32,64} (default 4), ``o`` one digit 0..9 (default 6), ``b`` 1..10000
  (default 63);
- a note is ``[duration] letter [# or _] [.] [octave] [.]`` with at most one dot (before or after the
  octave), ``h`` = ``b``, ``e#``/``b#`` by semitone arithmetic, an octave digit after ``p`` ignored;
- empty tokens (trailing or doubled commas) are skipped; a tune without a single tone is an error;
- pitch: octave 4 holds A4 = 440 Hz (MIDI number ``12*(octave+1) + semitone``); one beat = a quarter.

Durations are laid on one exact timeline (units of 1/256 whole note) and rounded to microseconds at
each note's end, so a long tune never drifts.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator

from pi_appliance.music.model import MAX_DURATION_US, MAX_NOTES, MAX_TEXT_BYTES, Note, Tune, TuneError

DEFAULT_DURATION = 4
DEFAULT_OCTAVE = 6
DEFAULT_BPM = 63
MAX_BPM = 10_000
DURATIONS = (1, 2, 4, 8, 16, 32, 64)

#: Pitch of MIDI note number m, the one formula every parser here uses (A4 = 69 = 440 Hz).
PITCHES: tuple[float, ...] = tuple(440.0 * 2.0 ** ((m - 69) / 12) for m in range(144))

_SEMITONE = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11, "h": 11}
_NAMES = ("c", "c#", "d", "d#", "e", "f", "f#", "g", "g#", "a", "a#", "b")
_NOTE_RE = re.compile(r"(\d{1,2})?([a-hp])([#_])?(\.)?(\d)?(\.)?", re.ASCII)  # ASCII: no '٤' or '²'
_UINT_RE = re.compile(r"[0-9]+")
_WS_RE = re.compile(r"\s+")
_LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
# Units of 1/256 whole note; whole note = 240e6 / bpm µs, so one unit = 937 500 / bpm µs.
_UNIT_NUM = 937_500
_UNITS = {d: 256 // d for d in DURATIONS}
_DOTTED_UNITS = {d: 384 // d for d in DURATIONS}


def midi_to_hz(m: int) -> float:
    return PITCHES[m]


def _end_us(units: int, bpm: int) -> int:
    """round(units * 937500 / bpm), in integers (half up)."""
    return (units * 2 * _UNIT_NUM + bpm) // (2 * bpm)


def _tokens(text: str, start: int, end: int) -> Iterator[tuple[str, int]]:
    """Comma-separated tokens of text[start:end] with whitespace removed, and each one's offset."""
    pos = start
    while pos <= end:
        comma = text.find(",", pos, end)
        stop = end if comma < 0 else comma
        raw = text[pos:stop]
        tok = _WS_RE.sub("", raw)
        if tok:
            yield tok, pos + (len(raw) - len(raw.lstrip()))
        pos = stop + 1


def _plain_tokens(text: str, start: int) -> Iterator[tuple[str, int]]:
    """Tokens of text[start:] when it holds no whitespace at all."""
    pos = start
    for tok in text[start:].split(","):
        if tok:
            yield tok, pos
        pos += len(tok) + 1


def _check_size(text: str) -> None:
    if len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES:
        raise TuneError(f"tune text too long: more than {MAX_TEXT_BYTES} bytes", MAX_TEXT_BYTES)


def decode_text(data: str | bytes) -> str:
    """bytes -> str (UTF-8), with the size limit; a decoding error names the byte offset."""
    if isinstance(data, str):
        _check_size(data)
        return data
    if len(data) > MAX_TEXT_BYTES:
        raise TuneError(f"tune text too long: more than {MAX_TEXT_BYTES} bytes", MAX_TEXT_BYTES)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TuneError("tune text is not UTF-8", e.start) from None


def _parse_defaults(text: str, start: int, end: int) -> tuple[int, int, int]:
    d, o, b = DEFAULT_DURATION, DEFAULT_OCTAVE, DEFAULT_BPM
    for tok, pos in _tokens(text, start, end):
        key, eq, value = tok.partition("=")
        key = key.lower()
        if not eq or not key:
            raise TuneError(f"defaults: expected key=value, got {tok!r}", pos, token=tok)
        if key == "d":
            if not _UINT_RE.fullmatch(value) or int(value) not in DURATIONS:
                raise TuneError(f"defaults: duration must be one of {DURATIONS}: {tok!r}", pos, token=tok)
            d = int(value)
        elif key == "o":
            if not _UINT_RE.fullmatch(value) or len(value) != 1:
                raise TuneError(f"defaults: octave must be a digit 0..9: {tok!r}", pos, token=tok)
            o = int(value)
        elif key == "b":
            if not _UINT_RE.fullmatch(value) or not 1 <= int(value) <= MAX_BPM:
                raise TuneError(f"defaults: tempo must be 1..{MAX_BPM} beats per minute: {tok!r}", pos, token=tok)
            b = int(value)
        # Unknown keys (s=, l=, v= of RTX and RTTTL 1.1) are ignored, as the Nokia text asks.
    return d, o, b


class _BadToken(Exception):
    """A note token that does not parse; the caller adds its number and position."""


def _read_token(tok: str, d: int, o: int) -> tuple[int, float]:
    """(units of 1/256 whole note, Hz or 0 for a rest) of one whitespace-free note token."""
    m = _NOTE_RE.fullmatch(tok.lower())
    if m is None:
        raise _BadToken(f"cannot parse {tok!r}")
    dur_s, letter, sharp, dot1, octave_s, dot2 = m.groups()
    if dot1 and dot2:
        raise _BadToken(f"two dots in {tok!r}")
    dur = int(dur_s) if dur_s else d
    if dur not in _UNITS:
        raise _BadToken(f"duration must be one of {DURATIONS}: {tok!r}")
    units = _DOTTED_UNITS[dur] if (dot1 or dot2) else _UNITS[dur]
    if letter == "p":
        if sharp:
            raise _BadToken(f"a rest cannot be sharp: {tok!r}")
        return units, 0.0
    octave = int(octave_s) if octave_s else o
    return units, PITCHES[12 * (octave + 1) + _SEMITONE[letter] + (1 if sharp else 0)]


# Real tunes repeat a few dozen tokens and note values; caching them doubles the parse speed. Both
# caches are bounded (cleared when full), so no input can grow them without limit.
_TOKEN_CACHE: dict[tuple[str, int, int], tuple[int, float]] = {}
_NOTE_CACHE: dict[tuple[float, int], Note] = {}
_CACHE_MAX = 4096


def parse_rtttl(data: str | bytes) -> Tune:
    """Parse one RTTTL string. Raises TuneError naming the character offset of the bad token."""
    text = decode_text(data)
    c2 = text.rfind(":")
    c1 = text.rfind(":", 0, c2) if c2 >= 0 else -1
    if c1 < 0:
        raise TuneError("expected name:defaults:notes (two colons)", c2 if c2 >= 0 else len(text))
    title = text[:c1].strip()
    d, o, b = _parse_defaults(text, c1 + 1, c2)
    notes: list[Note] = []
    units = 0
    t_prev = 0
    tones = 0
    n = 0
    token_cache, note_cache = _TOKEN_CACHE, _NOTE_CACHE
    if _WS_RE.search(text, c2 + 1) is None:  # the common case: split once, offsets by arithmetic
        tokens: Iterator[tuple[str, int]] = _plain_tokens(text, c2 + 1)
    else:
        tokens = _tokens(text, c2 + 1, len(text))
    for tok, pos in tokens:
        n += 1
        key = (tok, d, o)
        hit = token_cache.get(key)
        if hit is None:
            try:
                hit = _read_token(tok, d, o)
            except _BadToken as e:
                raise TuneError(f"note {n}: {e}", pos, token=tok) from None
            if len(token_cache) >= _CACHE_MAX:
                token_cache.clear()
            token_cache[key] = hit
        step, freq = hit
        units += step
        t_end = (units * 1_875_000 + b) // (2 * b)  # _end_us, inlined: this loop is the hot path
        if t_end > MAX_DURATION_US:
            raise TuneError(f"note {n}: tune longer than {MAX_DURATION_US // 60_000_000} minutes", pos, token=tok)
        if n > MAX_NOTES:
            raise TuneError(f"note {n}: more than {MAX_NOTES} notes", pos, token=tok)
        if freq:
            tones += 1
        nkey = (freq, t_end - t_prev)
        note = note_cache.get(nkey)
        if note is None:
            note = Note(freq, t_end - t_prev)
            if len(note_cache) >= _CACHE_MAX:
                note_cache.clear()
            note_cache[nkey] = note
        notes.append(note)
        t_prev = t_end
    if tones == 0:
        raise TuneError("no notes to play" if n == 0 else "only rests, no notes to play", c2 + 1)
    return Tune(title, tuple(notes), "rtttl")


# --- formatting ---------------------------------------------------------------------------------

_UNIT_CHOICES = sorted(
    [(u, d, False) for d, u in _UNITS.items()] + [(u, d, True) for d, u in _DOTTED_UNITS.items()],
    key=lambda x: (x[0], x[2]),
)
_BY_UNITS: dict[int, tuple[int, bool]] = {}
for _u, _d, _dot in _UNIT_CHOICES:
    _BY_UNITS.setdefault(_u, (_d, _dot))  # 2 units: 1/128 has no name, so 64 wins; plain before dotted


def _pitch_of(freq: float) -> int | None:
    """The MIDI number whose pitch is exactly ``freq`` in our table (octaves 0..9 of RTTTL), or None."""
    if not PITCHES[11] < freq < PITCHES[132]:
        return None
    m = round(69 + 12 * math.log2(freq / 440.0))
    if 12 <= m < 132 and PITCHES[m] == freq:
        return m
    return None


def _fit_units(notes: tuple[Note, ...], bpm: int) -> list[int] | None:
    """Per-note unit counts that reproduce every duration exactly at ``bpm``, or None."""
    out: list[int] = []
    units = 0
    t = 0
    for note in notes:
        t += note.duration_us
        guess = (2 * t * bpm + _UNIT_NUM) // (2 * _UNIT_NUM)
        for total in (guess, guess - 1, guess + 1):
            step = total - units
            if step in _BY_UNITS and _end_us(total, bpm) == t:
                out.append(step)
                units = total
                break
        else:
            return None
    return out


# Units (1/256 whole) to try for the most common note, most natural first: quarter, eighth, 16th, half...
_UNIT_PREFERENCE = (64, 32, 16, 128, 8, 256, 4, 96, 48, 24, 192, 12, 384, 6)


def _find_tempo(notes: tuple[Note, ...]) -> tuple[int, list[int]] | None:
    """The tempo (and unit counts) that reproduce every duration, trying the most natural first.

    Complete: a valid tempo b gives the most common duration t to some unit count u, and since
    note ends are rounded on the running total, |u * 937500 / b - t| < 1; every such b is tried.
    """
    common = Counter(n.duration_us for n in notes).most_common(1)[0][0]
    if common <= 0:
        return None
    tried: set[int] = set()
    for u in _UNIT_PREFERENCE:
        lo = max(1, math.floor(u * _UNIT_NUM / (common + 1)))
        hi = min(MAX_BPM, math.ceil(u * _UNIT_NUM / (common - 1)) if common > 1 else MAX_BPM)
        for b in range(lo, hi + 1):
            if b in tried or abs(u * _UNIT_NUM - common * b) >= b:
                continue
            tried.add(b)
            steps = _fit_units(notes, b)
            if steps is not None:
                return b, steps
    return None


def format_rtttl(tune: Tune) -> str:
    """The RTTTL text of ``tune``; ``parse_rtttl(format_rtttl(t))`` has the same notes and title.

    Raises TuneError when RTTTL cannot express the tune exactly: a pitch that is not an equal-tempered
    note of octaves 0..9, durations that fit no single tempo, or no tones. Line breaks in the title
    become spaces (the text is always one line).
    """
    notes = tune.notes
    if not notes:
        raise TuneError("RTTTL cannot express an empty tune", 0)
    # One line, whatever the title: line breaks become spaces (the title round-trips when it has none).
    title = _LINE_BREAKS.sub(" ", tune.title).strip()
    pitches: list[int | None] = []
    for i, note in enumerate(notes):
        p = _pitch_of(note.freq_hz)
        if p is None and not note.is_rest:
            raise TuneError(f"note {i + 1}: {note.freq_hz} Hz is not an RTTTL pitch", i)
        pitches.append(p)
    if all(p is None for p in pitches):
        raise TuneError("RTTTL cannot express a tune without tones", 0)
    found = _find_tempo(notes)
    if found is None:
        raise TuneError("the durations fit no single RTTTL tempo", 0)
    bpm, steps = found
    durs = [_BY_UNITS[s] for s in steps]
    d_default = Counter(d for d, _ in durs).most_common(1)[0][0]
    o_default = Counter(p // 12 - 1 for p in pitches if p is not None).most_common(1)[0][0]
    toks: list[str] = []
    for (dur, dot), p in zip(durs, pitches, strict=True):
        tok = "" if dur == d_default else str(dur)
        if p is None:
            tok += "p"
        else:
            octave = p // 12 - 1
            tok += _NAMES[p % 12]
            if octave != o_default:
                tok += str(octave)
        if dot:
            tok += "."
        toks.append(tok)
    text = f"{title}:d={d_default},o={o_default},b={bpm}:{','.join(toks)}"
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        raise TuneError(f"the RTTTL text would exceed {MAX_TEXT_BYTES} bytes", len(notes))
    back = parse_rtttl(text)
    if back.notes != notes or back.title != title:  # the round-trip guarantee, checked, not hoped for
        raise TuneError("RTTTL cannot express this tune exactly", 0)
    return text
