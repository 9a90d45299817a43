"""MPD's ACK errors as exception classes carrying the protocol code (MPD ``protocol/Ack.hxx``).

Handlers raise these (or the player's and library's own errors, mapped in :func:`to_ack`); the
session writes ``ACK [code@index] {command} message`` in one place.
"""

from __future__ import annotations

import enum

from pi_appliance.errors import ApplianceError


class Ack(enum.IntEnum):
    NOT_LIST = 1
    ARG = 2
    PASSWORD = 3
    PERMISSION = 4
    UNKNOWN = 5
    NO_EXIST = 50
    PLAYLIST_MAX = 51
    SYSTEM = 52
    PLAYLIST_LOAD = 53
    UPDATE_ALREADY = 54
    PLAYER_SYNC = 55
    EXIST = 56


class MpdError(ApplianceError):
    """An ACK reply. ``command`` is filled in by the session unless the error precedes lookup."""

    def __init__(self, code: Ack, message: str, command: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.command = command

    def line(self, index: int, command: str | None = None) -> bytes:
        name = self.command if self.command is not None else (command or "")
        return f"ACK [{int(self.code)}@{index}] {{{name}}} {self.message}\n".encode()


def arg_error(message: str) -> MpdError:
    return MpdError(Ack.ARG, message)


def to_ack(exc: Exception) -> MpdError:
    """Map an exception from the player, the library or a tune parser to MPD's code (CommandError.cxx)."""
    if isinstance(exc, MpdError):
        return exc
    # Imported here: the protocol layer sits above player and library and maps their errors.
    from pi_appliance import library, player
    from pi_appliance.music import TuneError

    text = str(exc) or type(exc).__name__
    if type(exc).__name__ in ("PlaylistTooLarge", "LibraryFull"):
        return MpdError(Ack.PLAYLIST_MAX, "Playlist is too large")
    if isinstance(exc, player.BadSongIndex | player.BadArgument):
        return MpdError(Ack.ARG, text)
    if isinstance(exc, player.NoSuchSong):
        return MpdError(Ack.NO_EXIST, text)
    if isinstance(exc, player.NotPlaying):
        return MpdError(Ack.PLAYER_SYNC, text)
    if isinstance(exc, library.NoSuchPlaylist):
        return MpdError(Ack.NO_EXIST, "No such playlist")
    if isinstance(exc, library.NoSuchTune):
        return MpdError(Ack.NO_EXIST, "No such directory")
    if type(exc).__name__ == "BadIndex":
        return MpdError(Ack.ARG, "Bad song index")
    if isinstance(exc, library.PlaylistExists):
        return MpdError(Ack.EXIST, "Playlist already exists")
    if isinstance(exc, library.BadName):
        return MpdError(Ack.ARG, text)
    if isinstance(exc, TuneError):
        return MpdError(Ack.ARG, text)
    if isinstance(exc, ValueError | IndexError | OverflowError):
        return MpdError(Ack.ARG, text)
    if isinstance(exc, OSError):
        return MpdError(Ack.SYSTEM, text)
    return MpdError(Ack.UNKNOWN, text)
