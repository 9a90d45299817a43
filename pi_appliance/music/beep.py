"""``beep(1)`` argument strings (spkr-beep 1.4), parsed with beep's semantics.

``[beep] [-f FREQ] [-l LEN] [-r REPS] [-d DELAY | -D DELAY] [-n|--new ...]``; each option takes its
value attached (``-f440``) or as the next word. Per tone the defaults are 440 Hz, 200 ms, one
repetition, 100 ms delay *between* repetitions; ``-D`` delays after every repetition including the
last; ``-n``/``--new`` starts a new tone with every default again; a repeated option overrides.
A tone expands to ``tone, (rest, tone) * (reps - 1)``, plus a final rest with ``-D``.

Where beep is silently forgiving we reject instead (research §3.1): ``-f 0`` (beep plays 440 Hz)
and anything above 20 000 Hz, and ``-r 0`` (a tone repeated no times is a typo, not a tune);
lengths, repetitions and delays must be whole numbers (ASCII digits) up to 300 000.
Fractional frequencies are kept (beep rounds them). ``-e DEVICE``, ``--debug`` and ``--verbose`` are
accepted and ignored; every other option (``-s``, ``-c``, ``-h``, ``-v``...) is an error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pi_appliance.music.model import MAX_DURATION_US, MAX_FREQ_HZ, MAX_NOTES, Note, Tune, TuneError, check_limits
from pi_appliance.music.rtttl import decode_text

MAX_VALUE = 300_000
_WORD_RE = re.compile(r"\S+")
_VALUE_OPTS = {"-f": "freq", "-l": "length", "-r": "reps", "-d": "delay", "-D": "end_delay"}
_LONG_VALUE_OPTS = {"--device": None}
_IGNORED_FLAGS = {"--debug", "--verbose"}


@dataclass
class _Tone:
    freq: float = 440.0
    length_ms: int = 200
    reps: int = 1
    delay_ms: int = 100
    end_delay: bool = False
    pos: int = 0


def _words(text: str) -> Iterator[tuple[str, int]]:
    for m in _WORD_RE.finditer(text):
        yield m.group(), m.start()


_UINT_RE = re.compile(r"[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")  # what %f reads, less inf/nan


def _uint(value: str, opt: str, pos: int) -> int:
    if not _UINT_RE.fullmatch(value):
        raise TuneError(f"{opt} needs a whole number 0..{MAX_VALUE}, got {value!r}", pos, token=value)
    n = int(value)
    if n > MAX_VALUE:
        raise TuneError(f"{opt} needs a whole number 0..{MAX_VALUE}, got {value!r}", pos, token=value)
    return n


def _freq(value: str, pos: int) -> float:
    f = float(value) if _FLOAT_RE.fullmatch(value) else math.nan
    if not math.isfinite(f):
        raise TuneError(f"-f needs a frequency in Hz, got {value!r}", pos, token=value)
    if not 0 < f <= MAX_FREQ_HZ:
        raise TuneError(f"-f must be above 0 and at most {MAX_FREQ_HZ:g} Hz, got {value!r}", pos, token=value)
    return f


def _expand(tones: list[_Tone]) -> list[Note]:
    notes: list[Note] = []
    total = 0

    def emit(freq: float, ms: int, pos: int) -> None:
        nonlocal total
        if ms == 0:
            return
        us = ms * 1000
        if notes and freq == 0 and notes[-1].freq_hz == 0:  # adjacent rests (-l 0 between delays) merge
            notes[-1] = Note(0.0, notes[-1].duration_us + us)
        else:
            if len(notes) >= MAX_NOTES:
                raise TuneError(f"more than {MAX_NOTES} notes", pos)
            notes.append(Note(freq, us))
        total += us
        if total > MAX_DURATION_US:
            raise TuneError(f"tune longer than {MAX_DURATION_US // 60_000_000} minutes", pos)

    for t in tones:
        for i in range(t.reps):
            emit(t.freq, t.length_ms, t.pos)
            if i < t.reps - 1 or t.end_delay:
                emit(0.0, t.delay_ms, t.pos)
    return notes


def parse_beep(data: str | bytes) -> Tune:
    """Parse a beep(1) command line (with or without the leading ``beep``)."""
    text = decode_text(data)
    words = list(_words(text))
    if words and words[0][0] == "beep":
        words = words[1:]
    tones = [_Tone(pos=words[0][1] if words else 0)]  # no options at all: beep's default beep
    i = 0
    while i < len(words):
        word, pos = words[i]
        i += 1
        if word in ("-n", "--new"):
            tones.append(_Tone(pos=pos))
            continue
        if word in _IGNORED_FLAGS:
            continue
        opt, value = word, None
        if word.startswith("--"):
            opt, eq, rest = word.partition("=")
            if opt not in _LONG_VALUE_OPTS:
                raise TuneError(f"unknown or unsupported beep option {word!r}", pos, token=word)
            value = rest if eq else None
        elif len(word) >= 2 and word[0] == "-" and word[:2] in {*_VALUE_OPTS, "-e"}:
            opt = word[:2]
            value = word[2:] or None
        else:
            raise TuneError(f"unknown or unsupported beep option {word!r}", pos, token=word)
        vpos = pos + 2
        if value is None:
            if i >= len(words):
                raise TuneError(f"{opt} needs a value", pos, token=word)
            value, vpos = words[i]
            i += 1
        if opt in ("-e", "--device"):
            continue  # the device is ours to choose, not the tune's
        tone = tones[-1]
        tone.pos = pos
        if opt == "-f":
            tone.freq = _freq(value, vpos)
        elif opt == "-l":
            tone.length_ms = _uint(value, opt, vpos)
        elif opt == "-r":
            tone.reps = _uint(value, opt, vpos)
            if tone.reps == 0:
                raise TuneError("-r needs at least 1 repetition", vpos, token=value)
        elif opt == "-d":
            tone.delay_ms, tone.end_delay = _uint(value, opt, vpos), False
        else:  # -D
            tone.delay_ms, tone.end_delay = _uint(value, opt, vpos), True
    notes = _expand(tones)
    if not any(n.freq_hz for n in notes):
        raise TuneError("no tone to play (every -l is 0)", tones[0].pos)
    return Tune("beep", tuple(notes), "beep")


def _fmt_freq(f: float) -> str:
    s = repr(float(f))
    return s[:-2] if s.endswith(".0") else s


def format_beep(tune: Tune) -> str:
    """beep arguments (without the word ``beep``) that play ``tune``.

    beep counts whole milliseconds, so note ends are rounded to the millisecond on the tune's
    running time (no drift); frequencies are written exactly. Leading rests use a zero-length tone.
    Raises TuneError for a tune without tones, with a tone or rest longer than 300 s, or beyond the
    limits (5000 notes, 30 minutes), so that whatever it returns parses back.
    """
    check_limits(tune.notes, 0)  # what beep text could say but no parser here would read back
    parts: list[str] = []
    t_us = 0
    t_ms = 0
    pending_rest = 0
    first = True
    for i, note in enumerate(tune.notes):
        t_us += note.duration_us
        end_ms = (t_us + 500) // 1000
        ms, t_ms = end_ms - t_ms, end_ms
        if ms > MAX_VALUE or (note.freq_hz == 0 and pending_rest + ms > MAX_VALUE):
            raise TuneError(f"note {i + 1}: beep cannot say more than {MAX_VALUE} ms at once", i)
        if note.freq_hz == 0:
            pending_rest += ms
            continue
        if pending_rest:
            if first:
                parts.append(f"-l0 -D{pending_rest}")
            else:
                parts[-1] += f" -D{pending_rest}"
            parts.append("-n")
            pending_rest = 0
        elif not first:
            parts.append("-n")
        parts.append(f"-f{_fmt_freq(note.freq_hz)} -l{ms}")
        first = False
    if first:
        raise TuneError("beep cannot express a tune without tones", 0)
    if pending_rest:
        parts[-1] += f" -D{pending_rest}"
    return " ".join(parts)
