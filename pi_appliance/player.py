"""The queue and the play state machine, with MPD's semantics. (API fixed here; bodies are the
player work's.)

Positions are 0-based (as on MPD's wire); ids are stable per queue entry. Every change raises one
or more idle subsystems ("player", "playlist", "mixer", "options", "stored_playlist", "database",
"output", "update") through the callbacks given to :meth:`Player.subscribe`. The player talks to
the buzzer only through :class:`pi_appliance.output.base.Output` and to disk only through
:mod:`pi_appliance.state` and :class:`pi_appliance.library.Library`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from pi_appliance.errors import ApplianceError
from pi_appliance.music import Tune


class PlayerError(ApplianceError):
    """Base of player errors; the MPD layer maps each to an ACK code and text."""


class BadSongIndex(PlayerError):
    """ACK 2 "Bad song index"."""

    def __init__(self, message: str = "Bad song index") -> None:
        super().__init__(message)


class NoSuchSong(PlayerError):
    """ACK 50 "No such song"."""

    def __init__(self, message: str = "No such song") -> None:
        super().__init__(message)


class NotPlaying(PlayerError):
    """ACK 55 "Not playing"."""

    def __init__(self, message: str = "Not playing") -> None:
        super().__init__(message)


class BadArgument(PlayerError):
    """ACK 2 with the given text (e.g. a bad range, a seek past the end)."""


class PlayState(enum.StrEnum):
    STOP = "stop"
    PLAY = "play"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    uri: str  # library URI or inline "rtttl:..."/"beep:..."
    title: str
    tune: Tune
    prio: int = 0
    version: int = 0  # queue version when this entry last changed (plchanges)


@dataclass(frozen=True, slots=True)
class PlayerStatus:
    """Everything MPD's ``status`` reports, in player terms (the MPD layer formats it)."""

    volume: int
    repeat: bool
    random: bool
    single: str  # "0" | "1" | "oneshot"
    consume: str  # "0" | "1" | "oneshot"
    playlist_version: int
    playlist_length: int
    state: PlayState
    song: int | None  # position of the current entry
    songid: int | None
    elapsed_s: float | None  # only while playing or paused
    duration_s: float | None
    nextsong: int | None
    nextsongid: int | None
    error: str | None


Subscriber = Callable[[str], None]  # called with an idle subsystem name


class Player:
    """One queue, one current song, one output."""

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(subsystem)`` on every change; returns an unsubscribe function."""
        raise NotImplementedError

    async def start(self) -> None:
        """Restore the saved state (first start: the built-in tunes fill the queue)."""
        raise NotImplementedError

    async def close(self) -> None:
        """Stop the output and save the state."""
        raise NotImplementedError

    # --- queue ---
    def entries(self) -> list[QueueEntry]:
        raise NotImplementedError

    def changes_since(self, version: int) -> list[tuple[int, QueueEntry]]:
        """(position, entry) of entries changed after queue ``version`` (plchanges)."""
        raise NotImplementedError

    def add(self, uri: str, pos: int | None = None) -> int:
        """Append (or insert at ``pos``) the tune at a library URI or an inline URI; returns the id."""
        raise NotImplementedError

    def add_tune(self, tune: Tune, uri: str, pos: int | None = None) -> int:
        raise NotImplementedError

    def delete(self, start: int, end: int | None = None) -> None:
        raise NotImplementedError

    def delete_id(self, songid: int) -> None:
        raise NotImplementedError

    def move(self, start: int, end: int | None, to: int) -> None:
        raise NotImplementedError

    def move_id(self, songid: int, to: int) -> None:
        raise NotImplementedError

    def swap(self, a: int, b: int) -> None:
        raise NotImplementedError

    def swap_id(self, a: int, b: int) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def shuffle(self, start: int | None = None, end: int | None = None) -> None:
        raise NotImplementedError

    def prio(self, priority: int, ranges: list[tuple[int, int]]) -> None:
        raise NotImplementedError

    def prio_id(self, priority: int, songids: list[int]) -> None:
        raise NotImplementedError

    # --- playback ---
    async def play(self, pos: int | None = None, *, at_ns: int | None = None) -> None:
        """``at_ns``: a time.time_ns() instant for the first edge (fleet start, pictl --at)."""
        raise NotImplementedError

    async def play_id(self, songid: int | None = None) -> None:
        raise NotImplementedError

    async def pause(self, flag: bool | None = None) -> None:
        """None toggles (the deprecated bare ``pause``)."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def next(self) -> None:
        raise NotImplementedError

    async def previous(self) -> None:
        raise NotImplementedError

    async def seek(self, pos: int, seconds: float) -> None:
        raise NotImplementedError

    async def seek_id(self, songid: int, seconds: float) -> None:
        raise NotImplementedError

    async def seek_cur(self, seconds: float, relative: bool = False) -> None:
        raise NotImplementedError

    # --- modes and mixer ---
    async def set_volume(self, volume: int) -> None:
        raise NotImplementedError

    def set_repeat(self, on: bool) -> None:
        raise NotImplementedError

    def set_random(self, on: bool) -> None:
        raise NotImplementedError

    def set_single(self, mode: str) -> None:
        raise NotImplementedError

    def set_consume(self, mode: str) -> None:
        raise NotImplementedError

    def status(self) -> PlayerStatus:
        raise NotImplementedError

    def current(self) -> QueueEntry | None:
        raise NotImplementedError

    def clear_error(self) -> None:
        raise NotImplementedError
