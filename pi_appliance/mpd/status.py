"""Querying MPD's status (MPD protocol: "Querying MPD's status")."""

from __future__ import annotations

from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import Perm, Section, rest
from pi_appliance.mpd.session import ALL_IDLE, IDLE_BITS, Idle, Session
from pi_appliance.mpd.songs import queue_song, round_s

SECTION = Section("status")
command = SECTION.command
_IDLE_BY_LOWER = {name.lower(): bit for name, bit in IDLE_BITS.items()}


@command("clearerror", Perm.PLAYER)
def clearerror(conn: Session) -> None:
    """Clears the current error message in status (this is also accomplished by any command that
    starts playback)."""
    conn.player.clear_error()


@command("currentsong", Perm.READ)
def currentsong(conn: Session) -> str:
    """Displays the song info of the current song (same song that is identified in status)."""
    entry = conn.player.current()
    if entry is None:
        return ""
    st = conn.player.status()
    out: list[str] = []
    queue_song(conn, entry, st.song if st.song is not None else 0, out)
    return "".join(out)


@command("idle", Perm.READ, rest())
def idle(conn: Session, names: list[str]) -> Idle:
    """Waits until there is a noteworthy change in one or more of MPD's subsystems. As soon as
    there is one, it lists all changed systems in a line in the format ``changed: SUBSYSTEM``.
    While a client is waiting for idle results, the server disables timeouts. The client may
    cancel idle by sending ``noidle``."""
    mask = 0
    for name in names:
        bit = _IDLE_BY_LOWER.get(name.lower())
        if bit is None:
            raise MpdError(Ack.ARG, f"Unrecognized idle event: {name}")
        mask |= bit
    return Idle(mask or ALL_IDLE)


@command("status", Perm.READ)
def status(conn: Session) -> str:
    """Reports the current status of the player and the volume level, in MPD's field order."""
    st = conn.player.status()
    single = st.single
    parts = [
        f"volume: {st.volume}\n"
        f"repeat: {int(st.repeat)}\n"
        f"random: {int(st.random)}\n"
        f"single: {single}\n"
        f"consume: {st.consume}\n"
        "partition: default\n"
        f"playlist: {st.playlist_version}\n"
        f"playlistlength: {st.playlist_length}\n"
        "mixrampdb: 0\n"
        f"state: {st.state}\n"
    ]
    if st.song is not None:
        parts.append(f"song: {st.song}\nsongid: {st.songid}\n")
    if st.state != "stop" and st.elapsed_s is not None:
        elapsed = st.elapsed_s
        duration = st.duration_s
        total = round_s(duration) if duration is not None else 0
        parts.append(f"time: {round_s(elapsed)}:{total}\nelapsed: {elapsed:.3f}\nbitrate: 0\n")
        if duration is not None:
            parts.append(f"duration: {duration:.3f}\n")
    if conn.app.updating is not None:
        parts.append(f"updating_db: {conn.app.updating}\n")
    if st.error:
        parts.append(f"error: {st.error}\n")
    if st.nextsong is not None:
        parts.append(f"nextsong: {st.nextsong}\nnextsongid: {st.nextsongid}\n")
    return "".join(parts)


@command("stats", Perm.READ)
def stats(conn: Session) -> str:
    """Displays statistics: artists, albums, songs, uptime, db_playtime, db_update, playtime."""
    tunes = conn.library.tunes()
    db_playtime = sum(t.duration_us for t in tunes) / 1e6
    return (
        f"uptime: {int(conn.app.uptime())}\n"
        f"playtime: {int(conn.app.play_time())}\n"
        "artists: 0\n"
        "albums: 0\n"
        f"songs: {len(tunes)}\n"
        f"db_playtime: {round_s(db_playtime)}\n"
        f"db_update: {conn.app.db_update}\n"
    )


__all__ = ["SECTION", "rest"]
