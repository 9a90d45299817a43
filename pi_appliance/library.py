"""The tune store: built-in tunes shipped in the package, tunes stored in the state directory, and
stored playlists.

URIs are what MPD clients see as ``file``:
- ``builtin/NN-name.rtttl`` for the built-in tunes (tune 1 is the demo), ordered by NN;
- ``tunes/NAME.rtttl`` (or ``.beep``) for tunes stored under ``<state_dir>/tunes/``;
- inline tunes are not in the library: the player accepts ``rtttl:<text>`` and ``beep:<args>`` URIs.

Stored playlists live in ``<state_dir>/playlists/NAME.m3u`` (one URI per line), as MPD keeps them.
Every write goes through :func:`pi_appliance.atomic.write_atomic`: a tune is parsed before it is
written, and a crash at any moment leaves either the old file or the new one, never half of one.

Concurrency: the daemon calls a Library from its event loop only; nothing here is thread-safe.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pi_appliance.atomic import clean_stale_temps, remove_durably, rename_durably, write_atomic
from pi_appliance.errors import ApplianceError
from pi_appliance.music import Tune, TuneError, parse_tune

log = logging.getLogger(__name__)

BUILTIN_DIR = "builtin"
TUNES_DIR = "tunes"
PLAYLISTS_DIR = "playlists"
TUNE_SUFFIXES = {".rtttl": "rtttl", ".beep": "beep"}
_BUILTIN_NAME = re.compile(r"\d\d-[a-z0-9-]+\.rtttl")
_MAX_NAME_BYTES = 200


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


class BadIndex(BadName):
    """A position outside a stored playlist: ACK 2 "Bad song index" (a BadName, so it maps the same)."""


class PlaylistTooLarge(LibraryError):
    """ACK 51 "Stored playlist is too large" (MPD's max_playlist_length)."""


class LibraryFull(LibraryError):
    """More stored tunes than the library's limit allows (ACK 2 in the MPD layer's mapping)."""


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


def _check_name(name: str, what: str) -> None:
    """MPD's rules for stored names (no separators, no line breaks, no leading dot), plus a length cap."""
    if not name:
        raise BadName(f"empty {what} name")
    if "/" in name or "\\" in name or "\0" in name:
        raise BadName(f"{what} name must not contain '/', '\\' or NUL: {name!r}")
    if any(ch in name for ch in "\r\n") or not name.isprintable():
        raise BadName(f"{what} name must be printable: {name!r}")
    if name.startswith("."):
        raise BadName(f"{what} name must not start with '.': {name!r}")
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise BadName(f"{what} name longer than {_MAX_NAME_BYTES} bytes")


def _title_for(tune: Tune, stem: str) -> str:
    return tune.title if tune.source_format == "rtttl" and tune.title else stem


class Library:
    """Built-ins + the state directory's tunes and playlists.

    Limits are constructor parameters: ``max_tunes`` stored tunes, ``max_playlist_length`` entries
    per stored playlist (MPD's default 16384).
    """

    def __init__(self, state_dir: str | Path, *, max_tunes: int = 1000, max_playlist_length: int = 16384) -> None:
        self.state_dir = Path(state_dir)
        self.max_tunes = max_tunes
        self.max_playlist_length = max_playlist_length
        self._tunes_dir = self.state_dir / TUNES_DIR
        self._playlists_dir = self.state_dir / PLAYLISTS_DIR
        for d in (self._tunes_dir, self._playlists_dir):
            d.mkdir(parents=True, exist_ok=True)
            removed = clean_stale_temps(d)
            if removed:
                log.warning("removed %d temp file(s) an interrupted write left in %s", removed, d)
        self._builtins = self._load_builtins()
        self._builtin_by_uri = {t.uri: t for t in self._builtins}
        self._stored: dict[str, tuple[tuple[int, int], LibraryTune]] = {}
        self.rescan()

    # --- tunes ---
    @staticmethod
    def _load_builtins() -> list[LibraryTune]:
        root = resources.files("pi_appliance") / "builtin_tunes"
        out: list[LibraryTune] = []
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if not _BUILTIN_NAME.fullmatch(entry.name):
                continue
            text = entry.read_text(encoding="utf-8")
            tune = parse_tune(text, "rtttl")  # a broken built-in is a packaging bug: let it raise
            try:
                mtime = os.stat(str(entry)).st_mtime
            except OSError:
                mtime = 0.0
            stem = entry.name.removesuffix(".rtttl")
            out.append(LibraryTune(f"{BUILTIN_DIR}/{entry.name}", _title_for(tune, stem), tune, mtime))
        return out

    def builtins(self) -> list[LibraryTune]:
        """The built-in tunes in order (tune 1 first)."""
        return list(self._builtins)

    def tunes(self) -> list[LibraryTune]:
        """Every tune: built-ins first, then stored tunes by name."""
        return self.builtins() + [lt for _, (_, lt) in sorted(self._stored.items())]

    def lookup(self, uri: str) -> LibraryTune:
        """The tune at ``uri``; NoSuchTune if none."""
        if uri in self._builtin_by_uri:
            return self._builtin_by_uri[uri]
        hit = self._stored.get(uri)
        if hit is not None:
            return hit[1]
        # A file copied into tunes/ since the last rescan is found without waiting for one.
        head, _, name = uri.partition("/")
        if head == TUNES_DIR and name and "/" not in name and not name.startswith("."):
            path = self._tunes_dir / name
            if Path(name).suffix in TUNE_SUFFIXES and path.is_file():
                lt = self._load_stored(path)
                if lt is not None:
                    return lt
        raise NoSuchTune(f"No such file: {uri}")

    def directories(self) -> list[str]:
        """Top-level directories for lsinfo: ``builtin`` and ``tunes``."""
        return [BUILTIN_DIR, TUNES_DIR]

    def _split_name(self, name: str, text: str) -> tuple[str, Tune]:
        """(file name with suffix, parsed tune): the suffix, when given, fixes the format."""
        _check_name(name, "tune")
        suffix = Path(name).suffix
        if suffix in TUNE_SUFFIXES:
            tune = parse_tune(text, TUNE_SUFFIXES[suffix])
            return name, tune
        tune = parse_tune(text)
        if tune.source_format not in TUNE_SUFFIXES.values():
            raise TuneError(f"only RTTTL and beep tunes can be stored, not {tune.source_format}", 0)
        return f"{name}.{tune.source_format}", tune

    def add_tune(self, name: str, text: str) -> LibraryTune:
        """Validate (parse) ``text`` first, then store it atomically as ``tunes/<name>``.

        ``name`` may carry the suffix (``.rtttl``/``.beep``, which then fixes the format) or not (the
        format is detected and the suffix added). An existing tune of that name is replaced; a crash
        leaves the old or the new one. Raises TuneError (bad text), BadName, LibraryFull.
        """
        filename, tune = self._split_name(name, text)
        uri = f"{TUNES_DIR}/{filename}"
        _check_name(filename, "tune")
        if uri not in self._stored and len(self._stored) >= self.max_tunes:
            raise LibraryFull(f"the library holds {self.max_tunes} tunes already")
        data = text.strip().encode("utf-8") + b"\n"
        path = self._tunes_dir / filename
        write_atomic(path, data, 0o644)
        st = path.stat()
        lt = LibraryTune(uri, _title_for(tune, Path(filename).stem), tune, st.st_mtime)
        self._stored[uri] = ((st.st_mtime_ns, st.st_size), lt)
        return lt

    def remove_tune(self, uri: str) -> None:
        if uri in self._builtin_by_uri:
            raise BadName(f"built-in tunes cannot be removed: {uri}")
        self.lookup(uri)  # NoSuchTune if it is not there
        name = uri.partition("/")[2]
        try:
            remove_durably(self._tunes_dir / name)
        except FileNotFoundError:
            raise NoSuchTune(f"No such file: {uri}") from None
        finally:
            self._stored.pop(uri, None)

    def _load_stored(self, path: Path) -> LibraryTune | None:
        """Parse one stored file into the cache; None (and a warning) when it is not a valid tune."""
        uri = f"{TUNES_DIR}/{path.name}"
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size)
            cached = self._stored.get(uri)
            if cached is not None and cached[0] == key:
                return cached[1]
            if st.st_size > 64 * 1024:
                raise TuneError("file larger than 64 KiB", None)
            tune = parse_tune(path.read_bytes(), TUNE_SUFFIXES[path.suffix])
        except FileNotFoundError:
            self._stored.pop(uri, None)
            return None
        except (TuneError, OSError) as e:
            log.warning("skipping %s: %s", path, e)
            self._stored.pop(uri, None)
            return None
        lt = LibraryTune(uri, _title_for(tune, path.stem), tune, st.st_mtime)
        self._stored[uri] = (key, lt)
        return lt

    def rescan(self) -> bool:
        """Re-read the state directory's tunes; True if anything changed (idle ``database``)."""
        before = {uri: key for uri, (key, _) in self._stored.items()}
        seen: set[str] = set()
        try:
            entries = sorted(self._tunes_dir.iterdir())
        except FileNotFoundError:
            entries = []
        for path in entries:
            if path.name.startswith(".") or path.suffix not in TUNE_SUFFIXES or not path.is_file():
                continue
            if len(seen) >= self.max_tunes:
                log.warning("more than %d tunes in %s: the rest are ignored", self.max_tunes, self._tunes_dir)
                break
            if self._load_stored(path) is not None:
                seen.add(f"{TUNES_DIR}/{path.name}")
        for uri in set(self._stored) - seen:
            del self._stored[uri]
        after = {uri: key for uri, (key, _) in self._stored.items()}
        return before != after

    # --- stored playlists ---
    def _playlist_path(self, name: str) -> Path:
        _check_name(name, "playlist")
        return self._playlists_dir / f"{name}.m3u"

    def _read_playlist(self, name: str) -> list[str]:
        path = self._playlist_path(name)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            raise NoSuchPlaylist(f"No such playlist: {name}") from None
        return [line for line in text.splitlines() if line and not line.startswith("#")]

    def _write_playlist(self, name: str, uris: list[str]) -> None:
        if len(uris) > self.max_playlist_length:
            raise PlaylistTooLarge(f"playlist {name!r} would hold more than {self.max_playlist_length} tunes")
        for uri in uris:
            if not uri or "\n" in uri or "\r" in uri:
                raise BadName(f"a playlist entry must be one non-empty line: {uri!r}")
        data = "".join(f"{u}\n" for u in uris).encode("utf-8")
        write_atomic(self._playlist_path(name), data, 0o644)

    def playlists(self) -> list[PlaylistInfo]:
        out: list[PlaylistInfo] = []
        for path in sorted(self._playlists_dir.glob("*.m3u")):
            if path.name.startswith("."):
                continue
            try:
                out.append(PlaylistInfo(path.name.removesuffix(".m3u"), path.stat().st_mtime))
            except FileNotFoundError:
                continue
        return out

    def playlist(self, name: str) -> list[str]:
        """The URIs of a stored playlist; NoSuchPlaylist if none."""
        return self._read_playlist(name)

    def save_playlist(self, name: str, uris: list[str], *, replace: bool = False) -> None:
        """PlaylistExists unless ``replace``."""
        if not replace and self._playlist_path(name).exists():
            raise PlaylistExists(f"Playlist already exists: {name}")
        self._write_playlist(name, list(uris))

    def delete_playlist(self, name: str) -> None:
        try:
            remove_durably(self._playlist_path(name))
        except FileNotFoundError:
            raise NoSuchPlaylist(f"No such playlist: {name}") from None

    def rename_playlist(self, old: str, new: str) -> None:
        src, dst = self._playlist_path(old), self._playlist_path(new)
        if not src.exists():
            raise NoSuchPlaylist(f"No such playlist: {old}")
        if dst.exists():
            raise PlaylistExists(f"Playlist already exists: {new}")
        rename_durably(src, dst)

    def playlist_add(self, name: str, uri: str) -> None:
        """Append (creating the playlist if needed), as MPD's playlistadd."""
        try:
            uris = self._read_playlist(name)
        except NoSuchPlaylist:
            uris = []
        self._write_playlist(name, [*uris, uri])

    def playlist_clear(self, name: str) -> None:
        """Empty the playlist (creating it if needed, as MPD does)."""
        self._write_playlist(name, [])

    def playlist_delete(self, name: str, pos: int) -> None:
        uris = self._read_playlist(name)
        if not 0 <= pos < len(uris):
            raise BadIndex("Bad song index")
        del uris[pos]
        self._write_playlist(name, uris)

    def playlist_move(self, name: str, from_pos: int, to_pos: int) -> None:
        uris = self._read_playlist(name)
        if not (0 <= from_pos < len(uris) and 0 <= to_pos < len(uris)):
            raise BadIndex("Bad song index")
        if from_pos == to_pos:
            return
        uris.insert(to_pos, uris.pop(from_pos))
        self._write_playlist(name, uris)
