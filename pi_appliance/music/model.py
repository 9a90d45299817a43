"""Value types every format parses to. Pure: no I/O, no clocks.

The player and the outputs speak Hz and whole microseconds. A rest is a note with ``freq_hz == 0``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pi_appliance.errors import ApplianceError

#: Hard limits on what any parser will produce (see research/music-formats.md).
MAX_TEXT_BYTES = 64 * 1024
MAX_NOTES = 5000
MAX_DURATION_US = 30 * 60 * 1_000_000
MAX_FREQ_HZ = 20_000.0


class TuneError(ApplianceError, ValueError):
    """Bad tune input. ``position`` locates the offending token.

    ``position`` is a character offset into the text (RTTTL, beep), a note index, a byte offset
    into a MIDI file, or ``None`` when the input as a whole is wrong (too long, empty). ``str()``
    gives ``"<message> (at <position>)"`` so that a one-line error names the place.
    """

    def __init__(self, message: str, position: int | None = None, *, token: str | None = None) -> None:
        self.message = message
        self.position = position
        self.token = token
        where = f" (at {position})" if position is not None else ""
        super().__init__(f"{message}{where}")

    def shifted(self, offset: int) -> TuneError:
        """The same error with its position moved by ``offset`` (for text embedded in a longer one)."""
        position = None if self.position is None else self.position + offset
        return TuneError(self.message, position, token=self.token)


@dataclass(frozen=True, slots=True)
class Note:
    """One tone (or a rest when ``freq_hz == 0``) lasting ``duration_us`` microseconds."""

    freq_hz: float
    duration_us: int

    def __post_init__(self) -> None:
        if not (0 <= self.freq_hz <= MAX_FREQ_HZ) or self.freq_hz != self.freq_hz:
            raise ValueError(f"frequency out of range: {self.freq_hz!r}")
        if self.duration_us < 0:
            raise ValueError(f"negative duration: {self.duration_us!r}")

    @property
    def is_rest(self) -> bool:
        return self.freq_hz == 0

    @classmethod
    def rest(cls, duration_us: int) -> Note:
        return cls(0.0, duration_us)


@dataclass(frozen=True, slots=True)
class Tune:
    """A monophonic melody: what one buzzer plays."""

    title: str
    notes: tuple[Note, ...]
    source_format: str = "unknown"
    # summed once: the player reads it for every MPD status while playing (immutable, so it holds)
    duration_us: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.notes, tuple):
            object.__setattr__(self, "notes", tuple(self.notes))
        object.__setattr__(self, "duration_us", sum(n.duration_us for n in self.notes))

    @property
    def duration_s(self) -> float:
        return self.duration_us / 1e6

    @classmethod
    def from_notes(cls, title: str, notes: Iterable[Note], source_format: str = "unknown") -> Tune:
        return cls(title, tuple(notes), source_format)


@dataclass(frozen=True, slots=True)
class Score:
    """Several voices (e.g. MIDI tracks) that a fleet can split across appliances, one voice each."""

    title: str
    voices: tuple[Tune, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not isinstance(self.voices, tuple):
            object.__setattr__(self, "voices", tuple(self.voices))

    @property
    def duration_us(self) -> int:
        return max((v.duration_us for v in self.voices), default=0)

    def voice(self, index: int) -> Tune:
        return self.voices[index]


def check_limits(notes: Sequence[Note], position: int | None = None) -> None:
    """Raise TuneError if a parsed tune breaks the hard limits."""
    if len(notes) > MAX_NOTES:
        raise TuneError(f"too many notes: {len(notes)} > {MAX_NOTES}", position)
    total = sum(n.duration_us for n in notes)
    if total > MAX_DURATION_US:
        raise TuneError(f"tune too long: {total / 1e6:.1f} s > {MAX_DURATION_US // 1_000_000} s", position)
