"""mpc's output formats (mpc 0.34 with Debian 12's libmpdclient), so scripts written for mpc keep working.

Pure functions over the dicts python-mpd2 returns; no sockets. The layouts were compared line by line
with Debian's mpc against a real mpd (tests/test_pictl_mpd.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

Song = Mapping[str, Any]
Status = Mapping[str, Any]


def _first(v: Any) -> str:
    """python-mpd2 gives a list for a repeated tag; mpc shows the first."""
    if isinstance(v, list):
        return str(v[0]) if v else ""
    return "" if v is None else str(v)


def format_song(song: Song) -> str:
    """mpc's default song format ``[%name%: &[%artist% - ]%title%]|%name%|[%artist% - ]%title%|%file%``."""
    name, artist, title = _first(song.get("name")), _first(song.get("artist")), _first(song.get("title"))
    by = f"{artist} - " if artist else ""
    if name and title:
        return f"{name}: {by}{title}"
    if name:
        return name
    if title:
        return f"{by}{title}"
    return _first(song.get("file"))


def _times(status: Status) -> tuple[int, int]:
    t = str(status.get("time", "0:0"))
    e, _, total = t.partition(":")
    try:
        return int(e), int(total or 0)
    except ValueError:
        return 0, 0


def elapsed_percent(status: Status) -> int:
    elapsed, total = _times(status)
    if total == 0:
        return 0
    if elapsed >= total:
        return 100
    return elapsed * 100 // total


def _on(flag: Any) -> bool:
    return str(flag) == "1"


def format_options(status: Status) -> str:
    """The ``volume: ... consume: ...`` line."""
    try:
        vol = int(status.get("volume", -1))
    except ValueError:
        vol = -1
    parts = [f"volume:{vol:3d}%   " if vol >= 0 else "volume: n/a   "]
    parts.append("repeat: " + ("on    " if _on(status.get("repeat")) else "off   "))
    parts.append("random: " + ("on    " if _on(status.get("random")) else "off   "))
    single = str(status.get("single", "0"))
    parts.append("single: " + ("on    " if single == "1" else "once  " if single == "oneshot" else "off   "))
    # Debian's libmpdclient (2.20) predates consume "oneshot": mpc shows anything but 0 as on.
    parts.append("consume: " + ("off" if str(status.get("consume", "0")) == "0" else "on "))
    return "".join(parts)


def format_status(status: Status, song: Song | None) -> str:
    """What ``mpc`` / ``mpc status`` prints (without the final newline)."""
    lines = []
    state = status.get("state")
    if state in ("play", "pause"):
        if song:
            lines.append(format_song(song))
        elapsed, total = _times(status)
        head = "[playing]" if state == "play" else "[paused] "
        pos = int(status.get("song", -1)) + 1
        length = int(status.get("playlistlength", 0))
        lines.append(
            f"{head} #{pos}/{length} {elapsed // 60:3d}:{elapsed % 60:02d}/{total // 60}:{total % 60:02d}"
            f" ({elapsed_percent(status)}%)"
        )
    if int(status.get("updating_db", 0) or 0) > 0:
        lines.append(f"Updating DB (#{status['updating_db']}) ...")
    lines.append(format_options(status))
    if status.get("error"):
        lines.append(f"ERROR: {status['error']}")
    return "\n".join(lines)


def format_volume(status: Status) -> str:
    try:
        vol = int(status.get("volume", -1))
    except ValueError:
        vol = -1
    return f"volume:{vol:3d}%" if vol >= 0 else "volume: n/a"


def _duration(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return f"{days} days, {h}:{m:02d}:{s:02d}"


def format_stats(stats: Mapping[str, Any]) -> str:
    def n(key: str) -> int:
        try:
            return int(stats.get(key, 0))
        except ValueError:
            return 0

    updated = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(n("db_update")))
    return "\n".join(
        [
            f"Artists:      {n('artists')}",
            f"Albums:       {n('albums')}",
            f"Songs:        {n('songs')}",
            "",
            f"Play Time:    {_duration(n('playtime'))}",
            f"Uptime:       {_duration(n('uptime'))}",
            f"DB Updated:   {updated}",
            f"DB Play Time: {_duration(n('db_playtime'))}",
        ]
    )


def format_output(output: Mapping[str, Any]) -> str:
    state = "enabled" if _on(output.get("outputenabled")) else "disabled"
    return f"Output {int(output.get('outputid', 0)) + 1} ({output.get('outputname', '')}) is {state}"


def parse_bool(word: str) -> bool:
    """mpc's boolean words."""
    w = word.lower()
    if w in ("on", "1", "true", "yes"):
        return True
    if w in ("off", "0", "false", "no"):
        return False
    raise ValueError(f'"{word}" is not a boolean value: <on|off|1|0|true|false|yes|no>')


def parse_seek(arg: str, status: Status) -> str:
    """``[+-][[HH:]MM:]SS`` or ``N%`` -> the argument of ``seekcur``."""
    if arg.endswith("%"):
        try:
            pct = float(arg[:-1])
        except ValueError:
            raise ValueError(f'"{arg}" is not a time or a percentage: <[+-][HH:MM:SS]|<0-100>%>') from None
        if not 0 <= pct <= 100:
            raise ValueError("seek percentage must be 0-100")
        if status.get("state") not in ("play", "pause"):
            raise ValueError("not currently playing")
        total = float(status.get("duration") or _times(status)[1])
        return f"{int(total * pct / 100)}"
    sign = arg[0] if arg[:1] in "+-" and arg[:1] else ""
    body = arg[len(sign) :]
    try:
        parts = [int(p) for p in body.split(":")]
    except ValueError:
        raise ValueError(f'"{arg}" is not a time or a percentage: <[+-][HH:MM:SS]|<0-100>%>') from None
    if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
        raise ValueError(f'"{arg}" is not a time or a percentage: <[+-][HH:MM:SS]|<0-100>%>')
    secs = 0
    for p in parts:
        secs = secs * 60 + p
    return f"{sign}{secs}"
