"""The tune store: built-in tunes shipped in the package, tunes stored in the state directory, and
stored playlists. (API fixed here; the bodies are the foundation work's.)

URIs are what MPD clients see as ``file``:
- ``builtin/NN-name.rtttl`` for the built-in tunes (tune 1 is the demo), ordered by NN;
- ``tunes/NAME.rtttl`` (or ``.beep``) for tunes stored under ``<state_dir>/tunes/``;
- inline tunes are not in the library: the player accepts ``rtttl:<text>`` and ``beep:<args>`` URIs.

Stored playlists live in ``<state_dir>/playlists/NAME.m3u`` (one URI per line), as MPD keeps them.
Every write goes through :func:`pi_appliance.atomic.write_atomic`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pi_appliance.errors import ApplianceError
from pi_appliance.music import Tune


class LibraryError(ApplianceError):
    """Base of library errors; the MPD layer maps each subclass to an ACK code."""


class NoSuchTune(LibraryError):
    """No tune at that URI (MPD: ACK 50 "No such directory" / "No such file")."""


class NoSuchPlaylist(LibraryError):
    """ACK 50 "No such playlist"."""


class PlaylistExists(LibraryError):
    """ACK 56 "Playlist already exists"."""


class BadName(LibraryError):
    """A tune or playlist name that is not allowed (path separators, leading dot, too long): ACK 2."""


@dataclass(frozen=True, slots=True)
class LibraryTune:
    uri: str
    title: str
    tune: Tune
    mtime: float  # seconds since the epoch (Last-Modified)

    @property
    def duration_us(self) -> int:
        return self.tune.duration_us


@dataclass(frozen=True, slots=True)
class PlaylistInfo:
    name: str
    mtime: float


class Library:
    """Built-ins + the state directory's tunes and playlists."""

    def __init__(self, state_dir: str | Path) -> None:
        self.state_dir = Path(state_dir)
        raise NotImplementedError

    # --- tunes ---
    def builtins(self) -> list[LibraryTune]:
        """The built-in tunes in order (tune 1 first)."""
        raise NotImplementedError

    def tunes(self) -> list[LibraryTune]:
        """Every tune: built-ins first, then stored tunes by name."""
        raise NotImplementedError

    def lookup(self, uri: str) -> LibraryTune:
        """The tune at ``uri``; NoSuchTune if none."""
        raise NotImplementedError

    def directories(self) -> list[str]:
        """Top-level directories for lsinfo: ``builtin`` and ``tunes``."""
        raise NotImplementedError

    def add_tune(self, name: str, text: str) -> LibraryTune:
        """Validate (parse) ``text`` first, then store it atomically as ``tunes/<name>``."""
        raise NotImplementedError

    def remove_tune(self, uri: str) -> None:
        raise NotImplementedError

    def rescan(self) -> bool:
        """Re-read the state directory's tunes; True if anything changed (idle ``database``)."""
        raise NotImplementedError

    # --- stored playlists ---
    def playlists(self) -> list[PlaylistInfo]:
        raise NotImplementedError

    def playlist(self, name: str) -> list[str]:
        """The URIs of a stored playlist; NoSuchPlaylist if none."""
        raise NotImplementedError

    def save_playlist(self, name: str, uris: list[str], *, replace: bool = False) -> None:
        """PlaylistExists unless ``replace``."""
        raise NotImplementedError

    def delete_playlist(self, name: str) -> None:
        raise NotImplementedError

    def rename_playlist(self, old: str, new: str) -> None:
        raise NotImplementedError

    def playlist_add(self, name: str, uri: str) -> None:
        """Append (creating the playlist if needed), as MPD's playlistadd."""
        raise NotImplementedError

    def playlist_clear(self, name: str) -> None:
        raise NotImplementedError

    def playlist_delete(self, name: str, pos: int) -> None:
        raise NotImplementedError

    def playlist_move(self, name: str, from_pos: int, to_pos: int) -> None:
        raise NotImplementedError
