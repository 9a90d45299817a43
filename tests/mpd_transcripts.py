"""Differential testing against Debian's mpd: WAV stand-ins for the tunes, a private mpd, a
recording proxy, the mpc step script and raw-protocol scenarios, and the normaliser that masks
what must differ (times, ids, file suffixes, audio format). Used by test_mpd_differential.py and
to capture tests/golden/ (``python tests/mpd_transcripts.py capture-golden``)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "golden"
STANDIN_RATE = 8000  # 1 ms = 8 frames: durations survive to the millisecond


# --- WAV stand-ins and a private mpd ---


def write_wav(path: Path, duration_us: int, title: str) -> None:
    """Silence as long as the tune, with the tune's title in a RIFF INFO INAM chunk (mpd reads it)."""
    frames = round(duration_us * STANDIN_RATE / 1_000_000)
    data = bytes(2 * frames)
    fmt = struct.pack("<HHIIHH", 1, 1, STANDIN_RATE, STANDIN_RATE * 2, 2, 16)
    name = title.encode() + b"\0"
    body = b"INAM" + struct.pack("<I", len(name)) + name + (b"\0" if len(name) % 2 else b"")
    info = b"INFO" + body
    chunks = (
        b"fmt " + struct.pack("<I", len(fmt)) + fmt
        + b"data" + struct.pack("<I", len(data)) + data
        + b"LIST" + struct.pack("<I", len(info)) + info
    )  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)


def standin_uri(uri: str) -> str:
    return re.sub(r"\.(rtttl|beep)$", ".wav", uri)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_greeting(port: int, timeout: float = 20.0, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"OK MPD "):
                    return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"no greeting on port {port} within {timeout} s")


@dataclass
class RealMpd:
    """Debian's mpd on a private port, its music directory filled with stand-ins for ``tunes``."""

    workdir: Path
    tunes: list  # LibraryTune
    output_name: str = "buzzer"
    port: int = 0
    proc: subprocess.Popen | None = None
    extra_conf: str = ""

    def start(self) -> RealMpd:
        mpd = shutil.which("mpd")
        if mpd is None:
            raise RuntimeError("mpd is not installed (tools/apt-packages.txt)")
        d = self.workdir
        (d / "music").mkdir(parents=True, exist_ok=True)
        (d / "playlists").mkdir(exist_ok=True)
        for t in self.tunes:
            write_wav(d / "music" / standin_uri(t.uri), t.duration_us, t.title)
        for sub in ("builtin", "tunes"):
            (d / "music" / sub).mkdir(exist_ok=True)
        self.port = self.port or free_port()
        (d / "mpd.conf").write_text(
            f'music_directory "{d}/music"\nplaylist_directory "{d}/playlists"\ndb_file "{d}/db"\n'
            f'state_file "{d}/state"\nlog_file "{d}/log"\nbind_to_address "127.0.0.1"\nport "{self.port}"\n'
            'zeroconf_enabled "no"\nauto_update "no"\n'
            f'audio_output {{\n type "null"\n name "{self.output_name}"\n mixer_type "software"\n}}\n' + self.extra_conf
        )
        self.proc = subprocess.Popen(
            [mpd, "--no-daemon", str(d / "mpd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_greeting(self.port, proc=self.proc)
        subprocess.run(["mpc", "-p", str(self.port), "-q", "update", "--wait"], check=True, timeout=60)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --- a recording proxy ---


@dataclass
class Conn:
    num: int
    lines: list[str] = field(default_factory=list)
    partial: dict[str, bytes] = field(default_factory=lambda: {"C": b"", "S": b""})

    def feed(self, who: str, data: bytes) -> None:
        buf = self.partial[who] + data
        *done, self.partial[who] = buf.split(b"\n")
        self.lines.extend(f"{who}: {x.decode('utf-8', 'backslashreplace')}" for x in done)

    def finish(self) -> None:
        for who, rest in self.partial.items():
            if rest:
                self.lines.append(f"{who}: {rest.decode('utf-8', 'backslashreplace')}  <no newline>")
        self.partial = {"C": b"", "S": b""}

    def render(self) -> str:
        return f"### conn {self.num}\n" + "".join(line + "\n" for line in self.lines)


class Recorder:
    """A TCP proxy in a thread that writes down both directions of every connection."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.conns: list[Conn] = []
        self.active = 0
        self.lock = threading.Lock()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _pump(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, conn: Conn, who: str) -> None:
        try:
            while data := await r.read(65536):
                with self.lock:
                    conn.feed(who, data)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        with self.lock:
            conn = Conn(len(self.conns) + 1)
            self.conns.append(conn)
            self.active += 1
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
            await asyncio.gather(self._pump(cr, uw, conn, "C"), self._pump(ur, cw, conn, "S"))
        finally:
            with self.lock:
                conn.finish()
                self.active -= 1

    def wait_quiet(self, timeout: float = 5.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if self.active == 0:
                    return
            time.sleep(0.01)

    def take(self, since: int) -> str:
        with self.lock:
            return "".join(c.render() for c in self.conns[since:])


# --- the mpc script ---


def mpc_steps(t: list[str], titles: list[str]) -> list[tuple[str, str]]:
    """(name, shell) steps. ``t``: tune URIs as this server names them; ``titles``: their titles."""
    q = [f"'{u}'" for u in t]
    return [
        ("version", "mpc version"),
        ("status-empty", "mpc status"),
        ("ls", "mpc ls"),
        ("ls-builtin", "mpc ls builtin"),
        ("listall", "mpc listall"),
        ("add", f"mpc add {q[0]} && mpc add {q[1]} && mpc add {q[2]}"),
        ("add-missing", "mpc add no/such.file"),
        ("add-dir", "mpc add builtin"),
        ("playlist", "mpc playlist"),
        ("clear", "mpc clear"),
        ("add-again", f"mpc add {q[0]} && mpc add {q[1]} && mpc add {q[2]}"),
        ("current-stopped", "mpc current"),
        ("play", "mpc play 2"),
        ("current", "mpc current"),
        ("status-playing", "mpc status"),
        ("pause", "mpc pause"),
        ("status-paused", "mpc"),
        ("toggle-play", "mpc toggle"),
        ("toggle-pause", "mpc toggle"),
        ("play-resume", "mpc play"),
        ("seek-abs", "mpc seek 0:02"),
        ("seek-rel", "mpc seek +1"),
        ("seek-pct", "mpc seek 10%"),
        ("next", "mpc next"),
        ("prev", "mpc prev"),
        ("next-at-end", "mpc play 3 && mpc next"),
        ("stop", "mpc stop"),
        ("play-bad", "mpc play 99"),
        ("queued", "mpc play 1 && mpc queued && mpc -q stop"),
        ("repeat-toggle", "mpc repeat"),
        ("repeat-off", "mpc repeat off"),
        ("random-on", "mpc random on"),
        ("random-off", "mpc random off"),
        ("single-on", "mpc single on"),
        ("single-oneshot", "mpc single once"),
        ("single-off", "mpc single off"),
        ("consume-on", "mpc consume on"),
        ("consume-off", "mpc consume off"),
        ("volume", "mpc volume"),
        ("volume-set", "mpc volume 50"),
        ("volume-up", "mpc volume +10"),
        ("volume-down", "mpc volume -20"),
        ("volume-bad", "mpc volume 200"),
        ("stop-again", "mpc stop"),
        ("move", "mpc move 1 3"),
        ("playlist-after-move", "mpc playlist"),
        ("del", "mpc del 1"),
        ("save", "mpc save mine"),
        ("save-exists", "mpc save mine"),
        ("lsplaylists", "mpc lsplaylists"),
        ("playlist-named", "mpc playlist mine"),
        ("load", "mpc clear && mpc load mine && mpc playlist"),
        ("load-missing", "mpc load nope"),
        ("rm", "mpc rm mine && mpc lsplaylists"),
        ("rm-missing", "mpc rm nope"),
        ("outputs", "mpc outputs"),
        ("stats", "mpc stats"),
        ("search", f"mpc search title '{titles[0][:6].lower()}'"),
        ("find", f"mpc find title '{titles[1]}'"),
        ("find-none", "mpc find title 'No Such Title'"),
        ("list-title", "mpc list title"),
        ("update", "mpc update --wait"),
        ("idle", "(sleep 0.5; mpc -q volume 40) & mpc idle mixer; wait"),
        ("idle-options", "(sleep 0.5; mpc -q repeat on) & mpc idle; wait; mpc -q repeat off"),
        ("replaygain", "mpc replaygain"),
        ("prio", "mpc prio 5 1 && mpc playlist"),
        ("insert", f"mpc insert {q[3]} && mpc playlist"),
        ("crop", "mpc play 1 && mpc crop && mpc playlist"),
        ("clear-end", "mpc clear && mpc status"),
    ]


@dataclass
class Step:
    name: str
    shell: str
    stdout: str
    stderr: str
    rc: int
    wire: str

    def render(self, wire: bool = True) -> str:
        err = f"--- stderr\n{self.stderr}" if self.stderr else ""
        body = f"--- wire\n{self.wire}" if wire else "--- wire not compared\n"
        return f"$ {self.shell}\n--- stdout (rc={self.rc})\n{self.stdout}{err}{body}"


#: Steps whose wire differs between two runs of mpd itself: ``update --wait`` polls ``idle update``
#: and ``status`` until the job is over, and how many rounds that takes is a race in mpd too.
WIRE_RACES = {"update"}


def run_mpc(port: int, steps: list[tuple[str, str]], settle: float = 0.1) -> dict[str, Step]:
    out: dict[str, Step] = {}
    with Recorder(port) as rec:
        env = dict(os.environ, MPD_HOST="127.0.0.1", MPD_PORT=str(rec.port))
        env.pop("MPD_PASSWORD", None)
        for name, shell in steps:
            before = len(rec.conns)
            r = subprocess.run(["bash", "-c", shell], env=env, capture_output=True, text=True, timeout=30)
            time.sleep(settle)
            rec.wait_quiet()
            out[name] = Step(name, shell, r.stdout, r.stderr, r.returncode, rec.take(before))
    return out


# --- raw protocol scenarios: (connection, line) steps; "~" lines are pauses in seconds ---

LONG_OK = "ping " + "x" * (8191 - 5)
LONG_BAD = "ping " + "x" * (8192 - 5)


def raw_scenarios(t: list[str]) -> dict[str, list[tuple[int, str]]]:
    one = lambda *lines: [(0, line) for line in lines]  # noqa: E731
    return {
        "framing": one("ping", "ping\r", "ping   ", "ping\t", "status 1", "foo", "pIng", "p_ing"),
        "close-uppercase": one("Ping", "ping"),
        "close-empty": one("", "ping"),
        "close-digit": one("1ping", "ping"),
        "close-http": one("GET / HTTP/1.1", "ping"),
        "close-word": one('ping"x"', "ping"),
        "quoting": one(
            'ping x"y',
            "add 'x'",
            'ping "x',
            'ping "x"y',
            'ping "a\\"b"',
            'play "0" "1"',
            'play ""',
            'add "no/such\\ file"',
            "add\tno_such_file",
        ),
        "too-many-args": one("ping" + " a" * 63, "ping" + " a" * 64, "foo" + " a" * 64),
        "line-8191": one(LONG_OK, "ping"),
        "line-8192": one(LONG_BAD, "ping"),
        "ack-texts": one(
            "clear",
            "play 99",
            "play -5",
            "play abc",
            "play 1 2",
            "setvol 200",
            "setvol -1",
            "setvol 1.5",
            "repeat 2",
            "repeat 01",
            'repeat "1"',
            "repeat 0",
            "seekcur abc",
            "seekcur +1x",
            "seekcur 5",
            "playlistinfo 0:",
            "playlistinfo 5:2",
            "playlistinfo -1",
            "playlistinfo 1:1",
            "playlistinfo 0:-1x",
            "delete 9",
            "move 0 9",
            "single x",
            "single oneshot",
            "single 0",
            "consume oneshot",
            "pause 2",
            "volume abc",
            "playid 99",
            "playid abc",
            "deleteid 99",
            "seek 0 5",
            "status 1",
            "idle foo",
            "binarylimit 10",
            "binarylimit 99999999",
            "binarylimit 128",
            "tagtypes foo",
            "tagtypes enable Foo",
            "tagtypes enable",
            "add nonexist",
            "load nope",
            "listplaylist nope",
            "rm nope",
            "rename nope x",
            'save ""',
            "save a/b",
            "swap 0 9",
            "moveid 99 0",
            "prio 300 0",
            "albumart x 0",
            "lsinfo nope",
            "listall nope",
            "find foo bar",
            "find title",
            "list foo",
        ),
        "command-list-ok": one("command_list_ok_begin", "ping", "clear", "play 99", "ping", "command_list_end", "ping"),
        "command-list-plain": one("command_list_begin", "ping", "ping", "command_list_end"),
        "command-list-empty": one(
            "command_list_begin", "command_list_end", "command_list_ok_begin", "command_list_end"
        ),
        "command-list-nested": one("command_list_begin", "ping", "command_list_begin", "command_list_end"),
        "command-list-lone-end": one("command_list_end", "command_list_begin x", "ping"),
        "command-list-close": one("command_list_ok_begin", "ping", "close", "ping", "command_list_end"),
        "command-list-idle": one("command_list_ok_begin", "ping", "idle", "ping", "command_list_end", "noidle", "ping"),
        "noidle-stray": one("noidle", "ping", "noidle", "noidle", "ping"),
        "noidle-args": one("noidle x"),
        "idle-noidle": one('idle "Player" Mixer', "~0.2", "noidle", "ping"),
        "idle-then-command-closes": one("idle", "~0.2", "ping", "ping"),
        "idle-pending": one("repeat 1", "setvol 40", "~0.3", "idle", "repeat 0", "~0.3", "idle options", "ping"),
        "idle-cleared-by-delivery": [
            (1, "idle options"),
            (0, "~0.2"),
            (0, "setvol 30"),
            (0, "~0.2"),
            (0, f'add "{t[0]}"'),
            (0, "repeat 1"),
            (0, "~0.3"),
            (1, "idle"),
            (0, "~0.3"),
            (0, "repeat 0"),
            (0, "~0.3"),
            (1, "ping"),
            (0, "clear"),
        ],
        "idle-cross": [(1, "idle mixer"), (0, "~0.2"), (0, "setvol 70"), (0, "~0.3"), (1, "ping"), (0, "setvol 100")],
        "tagtypes": one(
            "tagtypes",
            'tagtypes "clear"',
            "tagtypes",
            "tagtypes enable Artist AlbumArtist Title Name Composer Performer",
            "tagtypes",
            "tagtypes disable title",
            "tagtypes",
            "tagtypes all",
            "tagtypes enable title",
        ),
        "songs": one(
            "clear",
            f'add "{t[0]}"',
            f'addid "{t[1]}"',
            f'addid "{t[2]}" 0',
            "playlistinfo",
            "playlistinfo 1",
            "playlistinfo 1:2",
            "playlistinfo 3",
            "playlist",
            "playlistid 99",
            "plchanges 0",
            "plchangesposid 0",
            "currentsong",
            "play 1",
            "~0.3",
            "currentsong",
            "stop",
            "status",
            f'lsinfo "{t[0]}"',
            "tagtypes clear",
            "playlistinfo 0",
            "tagtypes all",
            "swap 0 2",
            "playlist",
            "move 0:2 1",
            "playlist",
            "delete 0:2",
            "playlist",
            "clear",
            "currentsong",
        ),
        "status-shapes": one(
            "clear",
            "status",
            f'add "{t[0]}"',
            f'add "{t[1]}"',
            "status",
            "play 0",
            "~0.3",
            "pause 1",
            "status",
            "stop",
            "status",
            "random 1",
            "repeat 1",
            "single 1",
            "status",
            "random 0",
            "repeat 0",
            "single 0",
            "clear",
        ),
        "database": one(
            'lsinfo ""',
            "lsinfo builtin",
            "listall builtin",
            "listallinfo builtin",
            "lsinfo",
            "list title",
            "list album",
            f'count title "{Path(t[0]).stem}"',
            "search any zzzz",
            "getvol",
            "replay_gain_status",
            "update",
            "~0.5",
            "readpicture nope 0",
        ),
        "stored": one(
            "clear",
            f'add "{t[0]}"',
            "save one",
            "save one",
            "listplaylists",
            "listplaylist one",
            "listplaylistinfo one",
            f'playlistadd two "{t[1]}"',
            "listplaylist two",
            "playlistclear two",
            "listplaylist two",
            "rename two three",
            "rm three",
            "rm three",
            "rm one",
            "listplaylists",
            "clear",
        ),
        "password-none": one('password "wrong"', "ping"),
        "close": one("ping", "close", "ping"),
    }


def run_raw(port: int, scenarios: dict[str, list[tuple[int, str]]]) -> dict[str, str]:
    """Each scenario on fresh connections; each connection's bytes in order, marked per step."""
    out: dict[str, str] = {}
    for name, steps in scenarios.items():
        socks: dict[int, socket.socket] = {}
        log: list[str] = []

        def conn(i: int, socks: dict[int, socket.socket] = socks, log: list[str] = log) -> socket.socket:
            if i not in socks:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                socks[i] = s
                log.append(f"[{i}] " + _drain(s, 2.0, reply=True))
            return socks[i]

        for i, line in steps:
            if line.startswith("~"):
                conn(i)
                time.sleep(float(line[1:]))
                continue
            s = conn(i)
            try:
                s.sendall(line.encode("utf-8", "surrogateescape") + b"\n")
            except OSError:
                log.append(f"[{i}] C: <send failed>")
                continue
            shown = line if len(line) < 100 else line[:40] + f"...<{len(line)} bytes>"
            log.append(f"[{i}] C: {shown}")
            for j, sj in socks.items():
                got = _drain(sj, 0.3, reply=True) if j == i else _drain(sj, 0.02)
                if got:
                    log.append(f"[{j}] " + got)
        for s in socks.values():
            s.close()
        out[name] = "\n".join(log) + "\n"
    return out


def _drain(s: socket.socket, wait: float, *, reply: bool = False) -> str:
    """What arrives within ``wait`` s; with ``reply``, return as soon as a reply is complete."""
    data = b""
    eof = False
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            break
        s.settimeout(left)
        try:
            d = s.recv(65536)
        except TimeoutError:
            break
        except OSError:
            eof = True
            break
        if not d:
            eof = True
            break
        data += d
        if reply and data.endswith(b"\n"):
            last = data[:-1].rsplit(b"\n", 1)[-1]
            if last == b"OK" or last.startswith(b"ACK [") or last.startswith(b"OK MPD "):
                break
    text = data.decode("utf-8", "backslashreplace")
    return text + ("<EOF>" if eof else "")


# --- normalising ---

NORMALIZE: list[tuple[str, str | None]] = [
    (r"^(\[\d\] )?S?: ?audio: .*$", None),
    (r"(?m)^(.*?)audio: \d+:\d+:\d+$", None),
    (r"\.wav\b", ".rtttl"),
    (r"(Format: )\d+:\d+:\d+", None),
    (r"\b(time|elapsed|bitrate|uptime|playtime|db_update|db_playtime|Last-Modified|updating_db): [^\n]*", r"\1: <v>"),
    (r"\b(playlist|song|songid|Id|nextsong|nextsongid): \d+", r"\1: <n>"),
    (r"\b(plugin|outputname): [^\n]*", r"\1: <v>"),
    (r"(duration: \d+\.\d\d)\d", r"\1"),
    (r"\d+:\d\d/\d+:\d\d", "<mm:ss/mm:ss>"),
    (r"\(\d+%\)", "(<pct>%)"),
    (r"#\d+/\d+", "#<n>/<n>"),
    (r"(mpd version:|Uptime:|Play Time:|DB Updated:|DB Play Time:|Playtime:)[^\n]*", r"\1 <v>"),
    (r"((?:plchanges|plchangesposid|playid|deleteid|moveid|playlistid|seekid|prioid) )\"?\d+\"?", r"\1<n>"),
    (r"OK MPD \S+", "OK MPD <ver>"),
]


def normalize(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        drop = False
        for pat, rep in NORMALIZE:
            if rep is None:
                if re.search(pat, line):
                    drop = True
                    break
            else:
                line = re.sub(pat, rep, line)
        if not drop:
            out.append(line)
    return out


def library_tunes(state_dir: Path) -> list:
    from pi_appliance.library import Library

    return Library(state_dir).tunes()


def main(argv: list[str]) -> int:
    """capture-golden: run both scripts against Debian's mpd and write tests/golden/."""
    import tempfile

    if argv[:1] != ["capture-golden"]:
        print("usage: mpd_transcripts.py capture-golden", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tunes = library_tunes(Path(tmp) / "state")
        mpd = RealMpd(Path(tmp) / "mpd", tunes).start()
        try:
            uris = [standin_uri(t.uri) for t in tunes]
            steps = run_mpc(mpd.port, mpc_steps(uris, [t.title for t in tunes]))
            raw = run_raw(mpd.port, raw_scenarios(uris))
        finally:
            mpd.stop()
    (GOLDEN / "mpc").mkdir(parents=True, exist_ok=True)
    (GOLDEN / "raw").mkdir(parents=True, exist_ok=True)
    for i, (name, step) in enumerate(steps.items(), 1):
        (GOLDEN / "mpc" / f"{i:02d}-{name}.txt").write_text(step.render())
    for name, text in raw.items():
        (GOLDEN / "raw" / f"{name}.txt").write_text(text)
    print(f"wrote {len(steps)} mpc steps and {len(raw)} raw scenarios to {GOLDEN}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main(sys.argv[1:]))
