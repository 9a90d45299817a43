"""Tunes: value types and the parsers of every format. Pure code: no sockets, clocks or GPIO.

``parse_tune(data, format=None)`` detects the format when not given and returns a :class:`Tune`.
"""

from pi_appliance.music.model import (
    MAX_DURATION_US,
    MAX_NOTES,
    MAX_TEXT_BYTES,
    Note,
    Score,
    Tune,
    TuneError,
)

__all__ = [
    "MAX_DURATION_US",
    "MAX_NOTES",
    "MAX_TEXT_BYTES",
    "Note",
    "Score",
    "Tune",
    "TuneError",
]
