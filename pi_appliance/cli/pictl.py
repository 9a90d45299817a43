"""``pictl``: drive pi-appliance buzzers (or any MPD server) from the command line, with mpc's habits.

Positions are 1-based as in mpc (0-based on the wire). With no ``--host`` and no ``MPD_HOST`` the one
appliance on the LAN is used (found over mDNS); ``--all``/``--group`` fan a command out to many.
Errors are one line on stderr and a non-zero exit code; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import mpd

from pi_appliance import __version__
from pi_appliance.cli import mpcfmt
from pi_appliance.cli.targets import Browsing, Target, resolve_many, resolve_one
from pi_appliance.errors import ApplianceError

PROG = "pictl"
SUBSYSTEMS = ("database", "update", "stored_playlist", "playlist", "player", "mixer", "output", "options")


class MpcError(ApplianceError):
    """An error mpc reports in its own words (printed bare, exit code 1), e.g. ``error adding X: ...``."""


class UsageError(MpcError):
    """Bad arguments to a command."""


class Client(mpd.MPDClient):
    """python-mpd2 with the fleet extension ``playat SONGPOS WALLTIME`` (see README, "Fleets")."""


Client.add_command("playat", mpd.MPDClient._parse_nothing)


@dataclass
class Ctx:
    """One command against one appliance: its connection and where its output goes."""

    client: Client
    target: Target
    out: TextIO
    err: TextIO
    args: argparse.Namespace

    def print(self, *lines: str) -> None:
        for line in lines:
            print(line, file=self.out)

    def status_line(self) -> None:
        """mpc prints the status after most commands (unless -q)."""
        if not self.args.quiet:
            self.print(status_text(self.client))


def status_text(client: Client) -> str:
    # mpc sends status+currentsong in one command list; python-mpd2 does the same with these two calls.
    client.command_list_ok_begin()
    client.status()
    client.currentsong()
    status, song = client.command_list_end()
    return mpcfmt.format_status(status, song or None)


def connect(target: Target, timeout: float) -> Client:
    c = Client()
    c.timeout = timeout
    c.idletimeout = None
    if target.host.startswith(("/", "@")):
        c.connect(target.host)
    else:
        c.connect(target.host, target.port)
    if target.password:
        c.password(target.password)
    return c


# ------------------------------------------------------------------------------------------ commands
# Each takes a Ctx and returns an exit code. Docstrings are the help text.


def cmd_status(ctx: Ctx) -> int:
    """Show the current song, the play state and the options (mpc's layout)."""
    ctx.print(status_text(ctx.client))
    return 0


def cmd_current(ctx: Ctx) -> int:
    """Show the song playing (or paused)."""
    st = ctx.client.status()
    if st.get("state") in ("play", "pause"):
        song = ctx.client.currentsong()
        if song:
            ctx.print(mpcfmt.format_song(song))
    return 0


def _at_ns(ctx: Ctx) -> int | None:
    return getattr(ctx.args, "at_ns", None)


def cmd_play(ctx: Ctx) -> int:
    """Start playing (song N, 1-based, else the current one); --at starts at a wall-clock instant."""
    c, n = ctx.client, ctx.args.position
    at_ns = _at_ns(ctx)
    if at_ns is not None:
        if n is None:
            st = c.status()
            pos = int(st.get("song", 0))
        else:
            pos = n - 1
        c.playat(pos, f"{at_ns // 1_000_000_000}.{at_ns % 1_000_000_000:09d}")
    elif n is None:
        c.play()
    else:
        c.play(n - 1)
    if ctx.args.wait:
        if at_ns is not None:
            time.sleep(max(0.0, (at_ns - time.time_ns()) / 1e9))
        return wait_for_end(ctx)
    ctx.status_line()
    return 0


def _bar(elapsed: float, total: float, width: int = 30) -> str:
    frac = 0.0 if total <= 0 else min(1.0, elapsed / total)
    done = round(frac * width)
    return (
        f"[{'#' * done}{'-' * (width - done)}] {int(elapsed) // 60}:{int(elapsed) % 60:02d}/"
        f"{int(total) // 60}:{int(total) % 60:02d} {frac * 100:3.0f}%"
    )


def wait_for_end(ctx: Ctx, poll: float = 0.1) -> int:
    """Show a progress bar on stderr until the song that plays now has ended."""
    c = ctx.client
    st = c.status()
    songid = st.get("songid")
    total = float(st.get("duration") or mpcfmt._times(st)[1] or 0)
    tty = ctx.err.isatty()
    shown = -1
    while st.get("state") in ("play", "pause") and st.get("songid") == songid:
        elapsed = float(st.get("elapsed") or 0)
        if tty:
            ctx.err.write("\r" + _bar(elapsed, total))
        elif int(elapsed) != shown:  # a log, not a terminal: one line a second
            ctx.err.write(_bar(elapsed, total) + "\n")
            shown = int(elapsed)
        ctx.err.flush()
        time.sleep(poll)
        st = c.status()
    ctx.err.write(("\r" if tty else "") + _bar(total, total) + "\n")
    ctx.err.flush()
    return 0


def _simple(name: str, method: str, doc: str, *args: Any) -> Callable[[Ctx], int]:
    def run(ctx: Ctx) -> int:
        getattr(ctx.client, method)(*args)
        ctx.status_line()
        return 0

    run.__doc__ = doc
    run.__name__ = f"cmd_{name}"
    return run


cmd_stop = _simple("stop", "stop", "Stop playing.")
cmd_next = _simple("next", "next", "Play the next song in the queue.")
cmd_prev = _simple("prev", "previous", "Play the previous song.")
cmd_pause = _simple("pause", "pause", "Pause.", 1)
cmd_clear = _simple("clear", "clear", "Empty the queue.")


def cmd_toggle(ctx: Ctx) -> int:
    """Pause if playing, else play."""
    if ctx.client.status().get("state") == "play":
        ctx.client.pause(1)
    else:
        ctx.client.play()
    ctx.status_line()
    return 0


def cmd_playlist(ctx: Ctx) -> int:
    """List the songs in the queue."""
    for song in ctx.client.playlistinfo():
        ctx.print(mpcfmt.format_song(song))
    return 0


def _position_error(path: str, data: bytes, e: Any) -> str:
    """``file:line:col: message`` for text, ``file: byte N: message`` for MIDI."""
    pos = getattr(e, "position", None)
    msg = getattr(e, "message", str(e))
    if pos is None:
        return f"{path}: {msg}"
    if data[:4] == b"MThd":
        return f"{path}: byte {pos}: {msg}"
    text = data.decode("utf-8", "replace")
    before = text[:pos]
    line = before.count("\n") + 1
    col = pos - (before.rfind("\n") + 1) + 1
    return f"{path}:{line}:{col}: {msg}"


def tune_uri(arg: str) -> tuple[str, str]:
    """An ``add`` argument -> (URI to send, what to call it). Local files are parsed here, sent inline."""
    if arg.lower().startswith(("rtttl:", "beep:")):
        return arg, arg
    path = Path(arg)
    if arg == "-" or path.is_file():
        from pi_appliance.music import TuneError, format_inline, parse_tune

        data = sys.stdin.buffer.read() if arg == "-" else path.read_bytes()
        try:
            tune = parse_tune(data)
        except TuneError as e:
            raise ApplianceError(_position_error(arg if arg != "-" else "<stdin>", data, e)) from None
        return format_inline(tune), arg
    return arg, arg


def cmd_add(ctx: Ctx) -> int:
    """Add tunes to the queue: library paths, rtttl:/beep: URIs, or local RTTTL/beep/MIDI files (sent inline)."""
    for uri in ctx.args.uri_resolved:
        try:
            ctx.client.add(uri)
        except mpd.CommandError as e:
            raise MpcError(f"error adding {uri if len(uri) < 60 else uri[:57] + '...'}: {_ack_text(e)}") from None
    return 0


def _ranges(words: Sequence[str], length: int, current: int | None) -> list[int]:
    """mpc's ``del`` positions: N (1-based), N-M, 0 for the current song -> 0-based positions."""
    out: set[int] = set()
    for w in words:
        lo_s, dash, hi_s = w.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if dash else lo
        except ValueError:
            raise UsageError(f'"{w}" is not a song position') from None
        if lo == 0 and not dash:
            if current is None:
                raise UsageError("no current song")
            out.add(current)
            continue
        if lo < 1 or hi < lo:
            raise UsageError(f'"{w}" is not a song position')
        out.update(range(lo - 1, hi))
    if any(p >= length for p in out):
        raise UsageError("song position out of range")
    return sorted(out, reverse=True)


def cmd_del(ctx: Ctx) -> int:
    """Remove songs from the queue (1-based, ranges N-M, 0 = current)."""
    st = ctx.client.status()
    cur = int(st["song"]) if "song" in st else None
    positions = _ranges(ctx.args.positions, int(st.get("playlistlength", 0)), cur)
    ctx.client.command_list_ok_begin()
    for p in positions:  # from the end, so earlier positions stay valid
        ctx.client.delete(p)
    ctx.client.command_list_end()
    return 0


def cmd_volume(ctx: Ctx) -> int:
    """Show or set the volume: N, +N, -N (0-100; on a piezo it is the duty cycle)."""
    v = ctx.args.value
    if v is None:
        ctx.print(mpcfmt.format_volume(ctx.client.status()))
        return 0
    try:
        n = int(v)
    except ValueError:
        raise UsageError(f'"{v}" is not a number') from None
    if v[:1] in "+-":
        cur = int(ctx.client.status().get("volume", 0))
        n = max(0, min(100, cur + n))
    ctx.client.setvol(n)
    ctx.status_line()
    return 0


def _mode(name: str, words: tuple[str, ...] = ()) -> Callable[[Ctx], int]:
    def run(ctx: Ctx) -> int:
        v = ctx.args.state
        if v is None:
            cur = str(ctx.client.status().get(name, "0"))
            value = "0" if cur != "0" else "1"
        elif v.lower() in words:
            value = "oneshot"
        else:
            try:
                value = "1" if mpcfmt.parse_bool(v) else "0"
            except ValueError as e:
                raise UsageError(str(e)) from None
        getattr(ctx.client, name)(value)
        ctx.status_line()
        return 0

    run.__doc__ = f"Toggle {name} mode, or set it: on|off" + ("|once" if words else "") + "."
    return run


cmd_repeat = _mode("repeat")
cmd_random = _mode("random")
cmd_single = _mode("single", ("once", "oneshot"))
cmd_consume = _mode("consume", ("once", "oneshot"))


def cmd_seek(ctx: Ctx) -> int:
    """Seek in the current song: [+-][HH:MM:SS] or N%."""
    arg = ctx.args.where
    st = ctx.client.status() if arg.endswith("%") else {}
    try:
        where = mpcfmt.parse_seek(arg, st)
    except ValueError as e:
        raise UsageError(str(e)) from None
    ctx.client.seekcur(where)
    ctx.status_line()
    return 0


def cmd_lsplaylists(ctx: Ctx) -> int:
    """List the stored playlists."""
    for entry in ctx.client.listplaylists():
        ctx.print(entry["playlist"])
    return 0


def cmd_load(ctx: Ctx) -> int:
    """Append a stored playlist to the queue."""
    for name in ctx.args.names:
        ctx.print(f"loading: {name}")
        ctx.client.load(name)
    return 0


def cmd_save(ctx: Ctx) -> int:
    """Save the queue as a stored playlist."""
    ctx.client.save(ctx.args.name)
    return 0


def cmd_outputs(ctx: Ctx) -> int:
    """List the outputs (the buzzer)."""
    for o in ctx.client.outputs():
        ctx.print(mpcfmt.format_output(o))
    return 0


def cmd_stats(ctx: Ctx) -> int:
    """Show the statistics."""
    ctx.print(mpcfmt.format_stats(ctx.client.stats()))
    return 0


def cmd_version(ctx: Ctx) -> int:
    """Show the protocol version the server speaks."""
    ctx.print(f"mpd version: {ctx.client.mpd_version}")
    return 0


def cmd_idle(ctx: Ctx) -> int:
    """Wait until something changes (optionally only in the given subsystems) and print what."""
    for s in ctx.client.idle(*ctx.args.events):
        ctx.print(s)
    return 0


def cmd_idleloop(ctx: Ctx) -> int:
    """Print every change, forever."""
    while True:
        for s in ctx.client.idle(*ctx.args.events):
            ctx.print(s)
        ctx.out.flush()


def cmd_orchestra_one(ctx: Ctx) -> int:
    """(internal) Queue one voice and start it at the agreed instant."""
    c = ctx.client
    c.clear()
    c.add(ctx.args.voice_uri)
    at_ns = ctx.args.at_ns
    c.playat(0, f"{at_ns // 1_000_000_000}.{at_ns % 1_000_000_000:09d}")
    ctx.print(f"voice {ctx.args.voice_index + 1}: {ctx.args.voice_title}")
    return 0


MPC_COMMANDS: dict[str, Callable[[Ctx], int]] = {
    "status": cmd_status,
    "current": cmd_current,
    "play": cmd_play,
    "stop": cmd_stop,
    "pause": cmd_pause,
    "toggle": cmd_toggle,
    "next": cmd_next,
    "prev": cmd_prev,
    "playlist": cmd_playlist,
    "add": cmd_add,
    "del": cmd_del,
    "clear": cmd_clear,
    "volume": cmd_volume,
    "repeat": cmd_repeat,
    "random": cmd_random,
    "single": cmd_single,
    "consume": cmd_consume,
    "seek": cmd_seek,
    "lsplaylists": cmd_lsplaylists,
    "load": cmd_load,
    "save": cmd_save,
    "outputs": cmd_outputs,
    "stats": cmd_stats,
    "idle": cmd_idle,
    "idleloop": cmd_idleloop,
    "version": cmd_version,
}


# ------------------------------------------------------------------------------------------- parsing


def parse_at(text: str, now: float | None = None) -> int:
    """``--at``: ``+2s``, ``+500ms``, ``+2`` (seconds from now), a Unix time, or ``HH:MM[:SS]`` today -> ns."""
    now = time.time() if now is None else now
    t = text.strip()
    try:
        if t.startswith("+"):
            body = t[1:]
            if body.endswith("ms"):
                return int((now + float(body[:-2]) / 1000) * 1e9)
            if body.endswith("s"):
                body = body[:-1]
            return int((now + float(body)) * 1e9)
        if ":" in t:
            parts = [float(p) for p in t.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            day = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0)
            secs = parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) == 3 else 0)
            return int((day.timestamp() + secs) * 1e9)
        return int(float(t) * 1e9)
    except ValueError:
        raise UsageError(f"--at {text!r}: expected +2s, +500ms, a Unix time or HH:MM[:SS]") from None


def _host_completer(**_: Any) -> list[str]:
    try:
        apps = Browsing(timeout=1.5, settle=0.3, interfaces=os.environ.get("PICTL_MDNS_INTERFACES")).find()
    except Exception:
        return []
    return [a.host + ".local" for a in apps] + [a.name for a in apps]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        add_help=False,
        description="Drive pi-appliance buzzers (and MPD servers) with mpc's habits; finds them over mDNS.",
        epilog="With no host and no MPD_HOST, the appliance on the LAN is used. MPD_HOST=password@host, MPD_PORT.",
    )
    p.add_argument("--help", action="help", help="show this help and exit")
    h = p.add_argument("-h", "--host", help="host, address, socket path or an appliance's mDNS name (or password@host)")
    h.completer = _host_completer  # type: ignore[attr-defined]
    p.add_argument("-p", "--port", type=int, help="TCP port (default 6600, or what mDNS says)")
    fleet = p.add_mutually_exclusive_group()
    fleet.add_argument("--all", action="store_true", help="run the command on every appliance found")
    fleet.add_argument("--group", metavar="NAME", help="run it on a group (TXT groups, or [groups] in the config)")
    p.add_argument("-q", "--quiet", action="store_true", help="print no status after commands")
    p.add_argument("--timeout", type=float, default=5.0, help="network timeout in seconds (default 5)")
    p.add_argument("--browse-timeout", type=float, default=3.0, help="how long to look for appliances (default 3 s)")
    p.add_argument(
        "--mdns-interfaces",
        metavar="ADDRS",
        default=os.environ.get("PICTL_MDNS_INTERFACES"),
        help="browse only on these addresses, comma-separated (env PICTL_MDNS_INTERFACES)",
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--version", action="version", version=f"pictl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[..., int] | None = None, help: str | None = None) -> argparse.ArgumentParser:
        doc = help or ((func.__doc__ or "").strip().splitlines()[0] if func else "")
        return sub.add_parser(name, help=doc, description=doc)

    for name in ("status", "current", "stop", "pause", "toggle", "next", "prev", "playlist", "clear"):
        add(name, MPC_COMMANDS[name])
    sp = add("play", cmd_play)
    sp.add_argument("position", nargs="?", type=int, help="song position, 1-based")
    sp.add_argument("--wait", action="store_true", help="show a progress bar until the song ends")
    sp.add_argument("--at", metavar="WHEN", help="start at +2s, +500ms, a Unix time or HH:MM[:SS] (fleets)")
    add("add", cmd_add).add_argument("uris", nargs="+", metavar="URI|FILE")
    add("del", cmd_del).add_argument("positions", nargs="+", metavar="N")
    add("volume", cmd_volume).add_argument("value", nargs="?", metavar="[+-]N")
    for name in ("repeat", "random", "single", "consume"):
        add(name, MPC_COMMANDS[name]).add_argument("state", nargs="?", metavar="on|off")
    add("seek", cmd_seek).add_argument("where", metavar="[+-][HH:MM:SS]|N%")
    add("lsplaylists", cmd_lsplaylists)
    add("load", cmd_load).add_argument("names", nargs="+", metavar="PLAYLIST")
    add("save", cmd_save).add_argument("name", metavar="PLAYLIST")
    for name in ("outputs", "stats", "version"):
        add(name, MPC_COMMANDS[name])
    for name in ("idle", "idleloop"):
        add(name, MPC_COMMANDS[name]).add_argument("events", nargs="*", choices=SUBSYSTEMS, metavar="SUBSYSTEM")
    sl = add("ls", help="list the appliances on the LAN")
    sl.add_argument("--json", action="store_true", help="as JSON")
    sl.add_argument("--mpd", action="store_true", help="include MPD servers that are not appliances")
    so = add("orchestra", help="split a several-voice piece across the appliances found, started together")
    so.add_argument("file", metavar="FILE", help="a MIDI file (one voice per track), or text with one tune a line")
    so.add_argument("--at", metavar="WHEN", default="+2s", help="when to start (default +2s)")
    add("render", help="render a tune locally to WAV/VCD (see pictl render --help)").add_argument(
        "rest", nargs=argparse.REMAINDER
    )
    add("knock", help="send knocks to an appliance (see pictl knock --help)").add_argument(
        "rest", nargs=argparse.REMAINDER
    )
    sc = add("completion", help='print a shell completion script: eval "$(pictl completion bash)"')
    sc.add_argument("shell", choices=["bash", "zsh", "fish", "tcsh"], nargs="?", default="bash")
    return p


# --------------------------------------------------------------------------------------------- runner


def _ack_text(e: mpd.CommandError) -> str:
    """``[2@0] {play} Bad song index`` -> ``Bad song index``."""
    s = str(e)
    return s.split("} ", 1)[1] if "} " in s else s


def run_on(target: Target, func: Callable[[Ctx], int], args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    client = connect(target, args.timeout)
    try:
        return func(Ctx(client, target, out, err, args))
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()


def describe(e: BaseException) -> str:
    if isinstance(e, mpd.CommandError):
        return f"MPD error: {_ack_text(e)}"
    if isinstance(e, ConnectionRefusedError):
        return "Connection refused"
    if isinstance(e, TimeoutError | OSError) and not isinstance(e, ConnectionError):
        return e.strerror or str(e) or type(e).__name__
    if isinstance(e, mpd.ConnectionError | ConnectionError):
        return f"connection lost: {e}" if str(e) else "connection lost"
    return str(e) or type(e).__name__


def fan_out(
    targets: Sequence[Target], func: Callable[[Ctx], int], args: argparse.Namespace, per_target: Callable | None = None
) -> int:
    """Run ``func`` on every target in parallel; print each one's output prefixed by its name, then who answered."""

    def one(i: int, t: Target) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        a = per_target(i, args) if per_target else args
        try:
            rc = run_on(t, func, a, out, err)
            return rc, out.getvalue(), ""
        except Exception as e:
            if args.debug:
                traceback.print_exc()
            return 1, out.getvalue(), describe(e)

    with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
        results = list(pool.map(lambda it: one(*it), enumerate(targets)))
    ok: list[str] = []
    failed: list[str] = []
    for t, (rc, text, error) in zip(targets, results, strict=True):
        for line in text.splitlines():
            print(f"[{t.name}] {line}")
        if rc == 0 and not error:
            ok.append(t.name)
        else:
            failed.append(f"{t.name} ({t.endpoint}): {error or f'exit {rc}'}")
    print(f"{PROG}: {len(ok)} of {len(targets)} answered" + (f": {', '.join(ok)}" if ok else ""), file=sys.stderr)
    for f in failed:
        print(f"{PROG}: no answer from {f}", file=sys.stderr)
    return 0 if not failed else 1


def cmd_ls(args: argparse.Namespace, browsing: Browsing) -> int:
    apps = browsing.find(include_mpd=args.mpd)
    if args.json:
        print(json.dumps([a.as_dict() for a in apps], indent=2))
        return 0
    rows = [("NAME", "ADDRESS", "PORT", "VERSION", "OUTPUT", "KNOCK", "GROUPS", "ID")]
    for a in apps:
        rows.append(
            (a.name, a.address, str(a.port), a.version or "-", a.output or a.kind, a.knock or "-",
             ",".join(a.groups) or "-", a.id or "-")
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    if not apps:
        print(f"{PROG}: no appliance answered within {browsing.timeout:g} s", file=sys.stderr)
        return 1
    return 0


def read_voices(path: str) -> tuple[str, list[Any]]:
    """The voices of a piece: MIDI tracks (music's parse_score), or one RTTTL/beep tune per line."""
    from pi_appliance.music import TuneError, parse_score, parse_tune

    data = Path(path).read_bytes()
    try:
        if data[:4] == b"MThd":
            score = parse_score(data)
            return score.title, list(score.voices)
        voices = []
        offset = 0
        for line in data.decode("utf-8").splitlines(keepends=True):
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    voices.append(parse_tune(line.strip()))
                except TuneError as e:
                    lead = len(line) - len(line.lstrip())
                    raise TuneError(e.message, None if e.position is None else offset + lead + e.position) from None
            offset += len(line.encode("utf-8"))
        return Path(path).stem, voices
    except TuneError as e:
        raise ApplianceError(_position_error(path, data, e)) from None
    except UnicodeDecodeError as e:
        raise ApplianceError(f"{path}: not UTF-8 text nor a MIDI file (byte {e.start})") from None


def cmd_orchestra(args: argparse.Namespace, browsing: Browsing) -> int:
    """One voice per appliance (voices wrap round when there are more appliances), all started by playat."""
    from pi_appliance.music import format_inline

    title, voices = read_voices(args.file)
    if not voices:
        raise ApplianceError(f"{args.file}: no voices")
    if args.group:
        targets = resolve_many(all_=False, group=args.group, browsing=browsing)
    elif args.host:
        targets = [resolve_one(args.host, args.port, browsing)]
    else:
        targets = resolve_many(all_=True, group=None, browsing=browsing)
    if len(voices) > len(targets):
        print(f"{PROG}: {len(voices)} voices, {len(targets)} appliances: voices {len(targets) + 1}.. are left out",
              file=sys.stderr)  # fmt: skip
    at_ns = parse_at(args.at)
    uris = [format_inline(v) for v in voices]

    def per_target(i: int, a: argparse.Namespace) -> argparse.Namespace:
        v = i % len(voices)
        return argparse.Namespace(
            **vars(a), voice_uri=uris[v], voice_index=v, voice_title=voices[v].title or f"{title} voice {v + 1}",
            at_ns=at_ns,
        )  # fmt: skip

    return fan_out(targets, cmd_orchestra_one, args, per_target)


def dispatch(args: argparse.Namespace) -> int:
    browsing = Browsing(timeout=args.browse_timeout, interfaces=args.mdns_interfaces)
    command = args.command or "status"
    if command == "ls":
        return cmd_ls(args, browsing)
    if command == "orchestra":
        return cmd_orchestra(args, browsing)
    if command == "completion":
        import argcomplete

        print(argcomplete.shellcode([PROG], shell=args.shell))
        return 0
    if command == "render":
        from pi_appliance.render import render_main

        return int(render_main(args.rest) or 0)
    if command == "knock":
        from pi_appliance.knock.client import knock_main

        return int(knock_main(args.rest) or 0)
    func = MPC_COMMANDS[command]
    if command == "play" and args.at:
        args.at_ns = parse_at(args.at)  # one instant for every appliance, decided before fanning out
    if command == "add":
        args.uri_resolved = [tune_uri(u)[0] for u in args.uris]  # parsed once, locally
    if args.all or args.group:
        password = None
        if os.environ.get("MPD_HOST"):
            password = os.environ["MPD_HOST"].partition("@")[0] if "@" in os.environ["MPD_HOST"] else None
        targets = resolve_many(all_=args.all, group=args.group, browsing=browsing, password=password)
        return fan_out(targets, func, args)
    target = resolve_one(args.host, args.port, browsing)
    return run_on(target, func, args, sys.stdout, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        import argcomplete

        argcomplete.autocomplete(parser)
    except ImportError:  # completion is a convenience; pictl works without it
        pass
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "status"
    for attr, default in (("wait", False), ("at", None)):
        if not hasattr(args, attr):
            setattr(args, attr, default)
    try:
        return dispatch(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        if isinstance(e, mpd.CommandError):
            print(f"MPD error: {_ack_text(e)}", file=sys.stderr)
        elif isinstance(e, MpcError):
            print(e, file=sys.stderr)
        elif isinstance(e, ApplianceError):
            print(f"{PROG}: {e}", file=sys.stderr)
        else:
            print(f"{PROG}: {describe(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
