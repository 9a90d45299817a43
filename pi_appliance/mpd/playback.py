"""Playback options and controlling playback (MPD protocol: "Playback options", "Controlling
playback"), plus the fleet extension ``playat``."""

from __future__ import annotations

import decimal

from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import BOOL, FLOAT, INT, UINT, Perm, Section, bounded_int, bounded_uint, opt
from pi_appliance.mpd.session import Session

SECTION = Section("playback")
command = SECTION.command


# --- playback options ---


@command("consume", Perm.PLAYER, BOOL)
def consume(conn: Session, on: bool) -> None:
    """Sets consume state to STATE, STATE should be 0 or 1. When consume is activated, each song
    played is removed from playlist."""
    conn.player.set_consume("1" if on else "0")


@command("random", Perm.PLAYER, BOOL)
def random(conn: Session, on: bool) -> None:
    """Sets random state to STATE, STATE should be 0 or 1."""
    conn.player.set_random(on)


@command("repeat", Perm.PLAYER, BOOL)
def repeat(conn: Session, on: bool) -> None:
    """Sets repeat state to STATE, STATE should be 0 or 1."""
    conn.player.set_repeat(on)


def _single_mode(text: str) -> str:
    if text in ("0", "1", "oneshot"):
        return text
    raise MpdError(Ack.ARG, "Unrecognized single mode, expected 0, 1, or oneshot")


@command("single", Perm.PLAYER, _single_mode)
def single(conn: Session, mode: str) -> None:
    """Sets single state to STATE, STATE should be 0, 1 or oneshot. When single is activated,
    playback is stopped after current song, or song is repeated if the repeat mode is enabled."""
    conn.player.set_single(mode)


@command("setvol", Perm.PLAYER, bounded_uint(100))
async def setvol(conn: Session, volume: int) -> None:
    """Sets volume to VOL, the range of volume is 0-100 (here: the buzzer's duty cycle)."""
    await conn.player.set_volume(volume)


@command("volume", Perm.PLAYER, bounded_int(-100, 100))
async def volume(conn: Session, change: int) -> None:
    """Changes volume by amount CHANGE. Deprecated (ncmpcpp still sends it)."""
    current = conn.player.status().volume
    await conn.player.set_volume(max(0, min(100, current + change)))


@command("getvol", Perm.READ)
def getvol(conn: Session) -> str:
    """Read the volume. The result is a volume: line like in status."""
    return f"volume: {conn.player.status().volume}\n"


@command("replay_gain_status", Perm.READ)
def replay_gain_status(conn: Session) -> str:
    """Prints replay gain options (a buzzer has none: always off)."""
    return "replay_gain_mode: off\n"


# --- controlling playback ---


@command("next", Perm.PLAYER)
async def next_(conn: Session) -> None:
    """Plays next song in the playlist."""
    await conn.player.next()


@command("pause", Perm.PLAYER, opt(BOOL))
async def pause(conn: Session, flag: bool | None = None) -> None:
    """Pause or resume playback. Pass 1 to pause playback or 0 to resume playback. Without the
    parameter, the pause state is toggled (deprecated; ncmpcpp's ``p`` sends it)."""
    await conn.player.pause(flag)


@command("play", Perm.PLAYER, opt(INT))
async def play(conn: Session, pos: int | None = None) -> None:
    """Begins playing the playlist at song number SONGPOS."""
    if pos is not None and pos < 0:
        if pos != -1:
            raise MpdError(Ack.ARG, "Bad song index")
        pos = None  # MPD: -1 means "the current song, or the first"
    await conn.player.play(pos)


@command("playid", Perm.PLAYER, opt(INT))
async def playid(conn: Session, songid: int | None = None) -> None:
    """Begins playing the playlist at song SONGID."""
    if songid is not None and songid < 0:
        songid = None
    await conn.player.play_id(songid)


@command("previous", Perm.PLAYER)
async def previous(conn: Session) -> None:
    """Plays previous song in the playlist."""
    await conn.player.previous()


@command("seek", Perm.PLAYER, UINT, FLOAT)
async def seek(conn: Session, pos: int, seconds: float) -> None:
    """Seeks to the position TIME (in seconds; fractions allowed) of entry SONGPOS in the playlist."""
    await conn.player.seek(pos, seconds)


@command("seekid", Perm.PLAYER, UINT, FLOAT)
async def seekid(conn: Session, songid: int, seconds: float) -> None:
    """Seeks to the position TIME (in seconds; fractions allowed) of song SONGID."""
    await conn.player.seek_id(songid, seconds)


@command("seekcur", Perm.PLAYER, str)
async def seekcur(conn: Session, text: str) -> None:
    """Seeks to the position TIME (within the current song). If prefixed by + or -, then the time
    is relative to the current playing position."""
    relative = text[:1] in ("+", "-")
    seconds = FLOAT(text)
    await conn.player.seek_cur(seconds, relative=relative)


@command("stop", Perm.PLAYER)
async def stop(conn: Session) -> None:
    """Stops playing."""
    await conn.player.stop()


def _walltime_ns(text: str) -> int:
    try:
        value = decimal.Decimal(text.strip())
    except decimal.InvalidOperation:
        raise MpdError(Ack.ARG, f"Float expected: {text}") from None
    if not value.is_finite() or value < 0:
        raise MpdError(Ack.ARG, f"Float expected: {text}")
    return int(value * 1_000_000_000)


@command("playat", Perm.PLAYER, INT, _walltime_ns)
async def playat(conn: Session, pos: int, at_ns: int) -> None:
    """pi-appliance extension: begin playing SONGPOS so that its first note's first edge happens
    at WALLTIME (Unix time in seconds, decimals allowed, on the NTP-synchronised clock). A fleet
    sends the same WALLTIME to every appliance to start them together."""
    if pos < 0:
        raise MpdError(Ack.ARG, "Bad song index")
    await conn.player.play(pos, at_ns=at_ns)
