"""What every session of one server shares: the player, the library, the command table, the
permission settings, and the idle fan-out (player events → every connection's idle flags)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from pi_appliance.config import MpdSettings
from pi_appliance.mpd.registry import ALL_PERMS, Perm, Registry, build_registry, parse_permissions
from pi_appliance.mpd.session import IDLE_BITS

if TYPE_CHECKING:
    from pi_appliance.library import Library
    from pi_appliance.mpd.session import Session
    from pi_appliance.output.base import OutputInfo
    from pi_appliance.player import Player

log = logging.getLogger(__name__)

#: How long an update job waits before it rescans (requests arriving meanwhile join it).
UPDATE_SETTLE_S = 0.05

#: MPD's tag types in its own order (the Debian build's ``tagtypes``); tunes carry only Title.
TAG_TYPES = (
    "Artist",
    "ArtistSort",
    "Album",
    "AlbumSort",
    "AlbumArtist",
    "AlbumArtistSort",
    "Title",
    "Track",
    "Name",
    "Genre",
    "Date",
    "OriginalDate",
    "Composer",
    "ComposerSort",
    "Performer",
    "Conductor",
    "Work",
    "Movement",
    "MovementNumber",
    "Ensemble",
    "Location",
    "Grouping",
    "Disc",
    "Label",
    "MUSICBRAINZ_ARTISTID",
    "MUSICBRAINZ_ALBUMID",
    "MUSICBRAINZ_ALBUMARTISTID",
    "MUSICBRAINZ_TRACKID",
    "MUSICBRAINZ_RELEASETRACKID",
    "MUSICBRAINZ_WORKID",
)
TAG_BY_LOWER = {t.lower(): t for t in TAG_TYPES}


def parse_passwords(entries: list[str]) -> dict[str, Perm]:
    """MPD's ``password "secret@read,add"`` lines."""
    out: dict[str, Perm] = {}
    for entry in entries:
        secret, at, perms = entry.rpartition("@")
        if not at or not secret:
            raise ValueError(f"password entry {entry!r} is not SECRET@PERMISSIONS")
        out[secret] = parse_permissions(perms)
    return out


class App:
    """Shared by the sessions of one server (TCP and Unix socket alike)."""

    def __init__(
        self,
        player: Player,
        library: Library,
        settings: MpdSettings | None = None,
        *,
        output_info: OutputInfo | None = None,
        registry: Registry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.player = player
        self.library = library
        self.settings = settings or MpdSettings()
        self.output_info = output_info
        self.registry = registry or build_registry()
        self.clock = clock
        self.passwords = parse_passwords(self.settings.password)
        if self.settings.default_permissions:
            self.default_permission = parse_permissions(self.settings.default_permissions)
        else:
            # MPD: everything, unless a password is configured, then nothing.
            self.default_permission = Perm.NONE if self.passwords else ALL_PERMS
        if self.settings.local_permissions:
            self.local_permission = parse_permissions(self.settings.local_permissions)
        else:
            self.local_permission = self.default_permission
        self.all_tags = frozenset(TAG_TYPES)
        self.sessions: set[Session] = set()
        self.started = time.monotonic()
        self.db_update = int(clock())
        self.update_job = 0
        self.updating: int | None = None  # the running job's id (status ``updating_db``)
        self._update_task: asyncio.Task[None] | None = None
        # play time (``stats playtime``): summed over the spans the player was playing
        self._play_total = 0.0
        self._play_since: float | None = None
        self._unsubscribe = player.subscribe(self.player_event)

    def close(self) -> None:
        self._unsubscribe()
        if self._update_task is not None:
            self._update_task.cancel()

    # --- the database update job (MPD's UpdateService, one job at a time) ---

    def start_update(self) -> int:
        """Queue a rescan of the tune store; returns the job id (``updating_db``)."""
        if self._update_task is not None and not self._update_task.done():
            return self.update_job  # one job at a time: the running one covers this request
        self.update_job += 1
        self.updating = self.update_job
        self.emit("update")
        self._update_task = asyncio.get_running_loop().create_task(self._update())
        return self.update_job

    async def _update(self) -> None:
        # Let a burst of update requests (mpc update, Home Assistant) settle into one rescan.
        await asyncio.sleep(UPDATE_SETTLE_S)
        try:
            changed = self.library.rescan()
        except Exception:
            log.exception("database update failed")
            changed = False
        self.updating = None
        if changed:
            self.db_update = int(self.clock())
            self.emit("database")
        self.emit("update")

    def emit(self, subsystem: str) -> None:
        """Raise an idle event on every connection."""
        bit = IDLE_BITS[subsystem]
        for session in list(self.sessions):
            session.idle_add(bit)

    def player_event(self, subsystem: str) -> None:
        if subsystem == "player":
            self._track_play_time()
        if subsystem in IDLE_BITS:
            self.emit(subsystem)

    def _track_play_time(self) -> None:
        now = time.monotonic()
        try:
            playing = self.player.status().state == "play"
        except Exception:  # a player mid-change; the next event corrects it
            return
        if self._play_since is not None:
            self._play_total += now - self._play_since
            self._play_since = None
        if playing:
            self._play_since = now

    def play_time(self) -> float:
        extra = time.monotonic() - self._play_since if self._play_since is not None else 0.0
        return self._play_total + extra

    def uptime(self) -> float:
        return time.monotonic() - self.started
