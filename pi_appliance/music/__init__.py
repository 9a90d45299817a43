"""Tunes: value types and the parsers of every format. Pure code: no sockets, clocks or GPIO.

``parse_tune(data, format=None)`` detects the format when not given and returns a :class:`Tune`.
``parse_inline(uri)`` reads the inline URIs the player accepts (``rtttl:<text>``, ``beep:<args>``),
``format_inline(tune)`` writes one (how pictl sends a tune it parsed locally).
"""

from __future__ import annotations

from pi_appliance.music.beep import format_beep, parse_beep
from pi_appliance.music.knock import parse_ticks
from pi_appliance.music.model import (
    MAX_DURATION_US,
    MAX_NOTES,
    MAX_TEXT_BYTES,
    Note,
    Score,
    Tune,
    TuneError,
)
from pi_appliance.music.rtttl import decode_text, format_rtttl, midi_to_hz, parse_rtttl

FORMATS = ("rtttl", "beep", "midi", "knock")
INLINE_SCHEMES = ("rtttl:", "beep:")


def detect_format(data: str | bytes) -> str:
    """Best guess of the format of ``data``: ``midi`` (MThd header), ``beep`` (starts with ``beep`` or
    an option), ``knock`` (only 0/1 and whitespace), else ``rtttl``."""
    if isinstance(data, bytes):
        if data[:4] == b"MThd":
            return "midi"
        head = data[:64].lstrip()
        text_head = head.decode("utf-8", "replace")
    else:
        text_head = data[:64].lstrip()
    if text_head.startswith("-") or text_head.split(None, 1)[:1] == ["beep"]:
        return "beep"
    if len(data) <= MAX_TEXT_BYTES:  # larger text is no tune anyway: leave the rejection to the parser
        body = data if isinstance(data, str) else data.decode("ascii", "replace")
        if body.strip() and not body.strip(" \t\r\n01"):
            return "knock"
    return "rtttl"


def parse_tune(data: str | bytes, format: str | None = None) -> Tune:
    """Parse ``data`` in ``format`` (one of FORMATS), detecting it when None. Raises TuneError."""
    fmt = format or detect_format(data)
    if fmt == "rtttl":
        return parse_rtttl(data)
    if fmt == "beep":
        return parse_beep(data)
    if fmt == "knock":
        return parse_ticks(decode_text(data))
    if fmt == "midi":
        from pi_appliance.music.midi import parse_midi  # mido is imported only when MIDI is asked for

        if isinstance(data, str):
            raise TuneError("MIDI is a binary format: give the file's bytes", 0)
        return parse_midi(data)
    raise TuneError(f"unknown tune format {fmt!r} (known: {', '.join(FORMATS)})", None)


def parse_score(data: bytes, *, min_note_us: int = 0, by: str = "auto") -> Score:
    """The voices of a MIDI file as a Score, one per track (or channel), all on one clock
    (see :func:`pi_appliance.music.midi.parse_midi_score`)."""
    from pi_appliance.music.midi import parse_midi_score

    return parse_midi_score(data, min_note_us=min_note_us, by=by)


def parse_inline(uri: str) -> Tune | None:
    """``rtttl:<text>`` or ``beep:<args>`` -> Tune; None for any other URI.

    A TuneError's position is an offset into ``uri`` (the scheme included).
    """
    for scheme, parser in (("rtttl:", parse_rtttl), ("beep:", parse_beep)):
        if uri[: len(scheme)].lower() == scheme:
            try:
                return parser(uri[len(scheme) :])
            except TuneError as e:
                raise e.shifted(len(scheme)) from None
    return None


def format_inline(tune: Tune) -> str:
    """An inline URI for ``tune``: ``rtttl:`` when RTTTL expresses it exactly, else ``beep:``."""
    try:
        return "rtttl:" + format_rtttl(tune)
    except TuneError:
        return "beep:" + format_beep(tune)


__all__ = [
    "FORMATS",
    "MAX_DURATION_US",
    "MAX_NOTES",
    "MAX_TEXT_BYTES",
    "Note",
    "Score",
    "Tune",
    "TuneError",
    "detect_format",
    "format_beep",
    "format_inline",
    "format_rtttl",
    "midi_to_hz",
    "parse_beep",
    "parse_inline",
    "parse_rtttl",
    "parse_score",
    "parse_ticks",
    "parse_tune",
]
