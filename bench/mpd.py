"""The MPD-protocol server vs Debian's mpd, side by side in one run (loopback, pinned CPUs, interleaved).

    .venv/bin/python bench/mpd.py [--quick] [--json FILE]

Both servers run at once, each pinned to the server CPU (every thread), the client to the other one
(``--server-cpu``/``--client-cpu``). Each measurement alternates between them round by round, so a
neighbour's load falls on both alike. Both queues hold the same tunes (mpd: silent WAV stand-ins of
the same lengths, as in tests/test_mpd_differential.py), ``repeat 1``, stopped with the first song
current, so ``status`` names a song and the next one. Stopped, because while mpd plays its status
waits on its player thread, and with every mpd thread on one CPU (its output thread is real-time)
that costs it from 0.1 to 10 ms a status at random: a pathology of the pinning, not of mpd. Ours is
also measured while playing (one row, ours only).

1. ping / status: sequential round trips per second over one python-mpd2 connection (median of
   the rounds).
2. pipelined: one ``command_list_begin``, 10,000 ``status``, ``command_list_end`` sent in one write
   over a raw socket; statuses per second until the final ``OK`` is read.
3. idle latency: connection B waits in ``idle player``, connection A sends ``play 0``; from A's
   send to B having read ``changed: player`` and ``OK`` (then ``stop`` and its event between
   samples). Median and p99 of 200 (the two servers take turns, sample by sample).
4. 100 clients each polling ``status`` 10 times a second (staggered): p99 and median latency.
5. start-up: spawning the server (pinned) to reading its greeting, state already on disk
   (ours: ``pi-appliance --output sim --no-mdns``, its modules byte-compiled first as an install
   leaves them; mpd: ``mpd --no-daemon`` with its database built).
6. idle RSS: VmRSS of the long-running servers once started, before any load.

Prints a table: ours, mpd, the ratio ours/mpd, and whether each of issue 4's goals is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this file is named mpd.py: its folder must not hide python-mpd2's ``mpd`` package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT / "tests"))

from mpd_daemon import start_daemon  # noqa: E402
from mpd_transcripts import RealMpd, free_port, library_tunes, standin_uri, wait_greeting  # noqa: E402

PIPELINED = 10_000
POLLERS = 100
POLL_HZ = 10.0


# --- plumbing ---


def pin(pid: int, cpu: int | None) -> None:
    """Every thread of ``pid`` onto ``cpu`` (threads made later inherit it)."""
    if cpu is None:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(int(tid), {cpu})


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p * (len(xs) - 1)))]


class Raw:
    """A blocking line client (no python-mpd2 parsing in the way)."""

    def __init__(self, port: int) -> None:
        self.s = socket.create_connection(("127.0.0.1", port))
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        assert self.line().startswith(b"OK MPD ")

    def line(self) -> bytes:
        while b"\n" not in self.buf:
            data = self.s.recv(65536)
            if not data:
                raise EOFError
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def send(self, text: str) -> None:
        self.s.sendall(text.encode() + b"\n")

    def cmd(self, text: str) -> list[bytes]:
        self.send(text)
        out = []
        while (line := self.line()) != b"OK":
            if line.startswith(b"ACK"):
                raise RuntimeError(f"{text!r}: {line!r}")
            out.append(line)
        return out

    def until_ok(self) -> list[bytes]:
        out = []
        while (line := self.line()) != b"OK":
            out.append(line)
        return out

    def close(self) -> None:
        self.s.close()


@dataclass
class Server:
    name: str
    port: int
    pid: int
    stop: Callable[[], Any]
    startup_cmd: list[str] = field(default_factory=list)
    startup_port: int = 0


def prepare_queue(port: int, uris: list[str]) -> None:
    r = Raw(port)
    r.cmd("clear")
    for u in uris:
        r.cmd(f'add "{u}"')
    r.cmd("repeat 1")
    r.cmd("play 0")  # stopped with the first song current: status names it and the next one
    r.cmd("stop")
    r.close()


def start_servers(tmp: Path, server_cpu: int | None) -> tuple[Server, Server]:
    tunes = library_tunes(tmp / "lib")
    # ours: the same module the tests start, its queue the built-ins
    ours_d = start_daemon(tmp / "ours")
    prepare_queue(ours_d.port, [t.uri for t in tunes])
    mpd = RealMpd(tmp / "mpd", tunes).start()
    assert mpd.proc is not None
    prepare_queue(mpd.port, [standin_uri(t.uri) for t in tunes])
    pin(ours_d.proc.pid, server_cpu)
    pin(mpd.proc.pid, server_cpu)

    # start-up copies: state/database already on disk, their own ports, spawned over and over
    su_ours = start_daemon(tmp / "ours-startup")
    su_ours.stop()
    exe = str(Path(sys.executable).parent / "pi-appliance")
    ours_cmd = [exe, "--output", "sim", "--no-mdns", "--bind", "127.0.0.1", "--port", str(su_ours.port),
                "--state-dir", str(su_ours.state_dir)]  # fmt: skip
    su_mpd = RealMpd(tmp / "mpd-startup", tunes).start()
    su_mpd.stop()
    mpd_cmd = [shutil.which("mpd") or "mpd", "--no-daemon", str(tmp / "mpd-startup" / "mpd.conf")]
    if server_cpu is not None and shutil.which("taskset"):
        ours_cmd = ["taskset", "-c", str(server_cpu), *ours_cmd]
        mpd_cmd = ["taskset", "-c", str(server_cpu), *mpd_cmd]
    ours = Server("ours", ours_d.port, ours_d.proc.pid, ours_d.stop, ours_cmd, su_ours.port)
    theirs = Server("mpd", mpd.port, mpd.proc.pid, mpd.stop, mpd_cmd, su_mpd.port)
    return ours, theirs


def start_floor(server_cpu: int | None) -> Server:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(port)], stdout=subprocess.DEVNULL)
    wait_greeting(port, proc=proc)
    pin(proc.pid, server_cpu)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    return Server("floor", port, proc.pid, stop)


# --- the measurements ---


#: The ceiling for any CPython server: the event loop ours runs on, answering OK to every line.
FLOOR_SERVER = """
import asyncio, sys
class Echo(asyncio.Protocol):
    def connection_made(self, t): self.t = t; t.write(b"OK MPD 0.23.5\\n")
    def data_received(self, d): self.t.write(b"OK\\n" * d.count(b"\\n"))
async def main():
    await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]))
    await asyncio.sleep(3600)
try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


def bench_rtt(servers: tuple[Server, ...], n: int, rounds: int) -> dict[str, dict[str, float]]:
    from mpd import MPDClient

    res: dict[str, dict[str, list[float]]] = {s.name: {"ping": [], "status": []} for s in servers}
    clients = {}
    for s in servers:
        c = MPDClient()
        c.connect("127.0.0.1", s.port)
        clients[s.name] = c
    res["ours"]["status_playing"] = []
    for _ in range(rounds):
        for what in ("ping", "status", "status_playing"):
            for s in servers:
                if (what == "status_playing" and s.name != "ours") or (what != "ping" and s.name == "floor"):
                    continue
                if what == "status_playing":
                    clients[s.name].play(0)
                fn = getattr(clients[s.name], what.removesuffix("_playing"))
                for _ in range(50):
                    fn()
                t = time.perf_counter()
                for _ in range(n):
                    fn()
                res[s.name][what].append(n / (time.perf_counter() - t))
                if what == "status_playing":
                    clients[s.name].stop()
    for c in clients.values():
        c.disconnect()
    return {k: {w: statistics.median(v) for w, v in d.items() if v} for k, d in res.items()}


def bench_pipelined(servers: tuple[Server, ...], rounds: int) -> dict[str, float]:
    rounds = max(3, rounds // 2)
    request = ("command_list_begin\n" + "status\n" * PIPELINED + "command_list_end\n").encode()
    res: dict[str, list[float]] = {s.name: [] for s in servers}
    conns = {s.name: Raw(s.port) for s in servers}
    for _ in range(rounds):
        for s in servers:
            r = conns[s.name]
            t = time.perf_counter()
            r.s.sendall(request)
            data = bytearray()
            while not data.endswith(b"\nOK\n"):
                chunk = r.s.recv(1 << 20)
                if not chunk:
                    raise EOFError(s.name)
                data += chunk
            dt = time.perf_counter() - t
            assert data.count(b"\nstate: ") == PIPELINED, (s.name, data.count(b"\nstate: "), bytes(data[-300:]))
            res[s.name].append(PIPELINED / dt)
    for r in conns.values():
        r.close()
    return {k: statistics.median(v) for k, v in res.items()}


def bench_idle(servers: tuple[Server, ...], samples: int, settle: float = 0.005) -> dict[str, dict[str, float]]:
    pairs = {s.name: (Raw(s.port), Raw(s.port)) for s in servers}
    lat: dict[str, list[float]] = {s.name: [] for s in servers}
    for a, _b in pairs.values():
        a.cmd("stop")
    for i in range(samples + 5):
        for s in servers:
            a, b = pairs[s.name]
            b.send("idle player")
            time.sleep(settle)  # let the server take B's idle first
            t0 = time.perf_counter()
            a.send("play 0")
            lines = b.until_ok()
            t1 = time.perf_counter()
            assert lines == [b"changed: player"], lines
            assert a.line() == b"OK"
            if i >= 5:  # warm-up
                lat[s.name].append(t1 - t0)
            b.send("idle player")
            time.sleep(settle)
            a.cmd("stop")
            b.until_ok()
    for a, b in pairs.values():
        a.close()
        b.close()
    return {k: {"median": statistics.median(v), "p99": pct(v, 0.99)} for k, v in lat.items()}


async def _poll(port: int, seconds: float) -> list[float]:
    lat: list[float] = []
    period = 1 / POLL_HZ
    loop = asyncio.get_running_loop()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not (await reader.readline()).startswith(b"OK MPD "):
            raise EOFError("no greeting")
        return reader, writer

    # one after the other: 100 SYNs at once overflow a small listen backlog (dropped, retried after 1 s)
    conns = [await connect() for _ in range(POLLERS)]

    async def client(i: int) -> None:
        reader, writer = conns[i]
        await asyncio.sleep(period * i / POLLERS)  # staggered
        end = loop.time() + seconds
        nxt = loop.time()
        while loop.time() < end:
            t = time.perf_counter()
            writer.write(b"status\n")
            while (line := await reader.readline()) != b"OK\n":
                if not line:
                    raise EOFError(f"client {i}: the server closed the connection")
            lat.append(time.perf_counter() - t)
            nxt += period
            await asyncio.sleep(max(0.0, nxt - loop.time()))
        writer.close()

    await asyncio.gather(*(client(i) for i in range(POLLERS)))
    return lat


def bench_poll(servers: tuple[Server, ...], seconds: float, rounds: int) -> dict[str, dict[str, float]]:
    lat: dict[str, list[float]] = {s.name: [] for s in servers}
    for _ in range(rounds):
        for s in servers:
            time.sleep(0.5)  # the connections before have gone: both allow 100 at most
            lat[s.name] += asyncio.run(_poll(s.port, seconds))
    return {k: {"p99": pct(v, 0.99), "median": statistics.median(v), "n": len(v)} for k, v in lat.items()}


def _spawn_to_greeting(cmd: list[str], port: int) -> float:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    if s.recv(64).startswith(b"OK MPD "):
                        return time.perf_counter() - t0
            except OSError:
                pass
            if p.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {p.returncode}")
            if time.perf_counter() - t0 > 20:
                raise RuntimeError(f"{cmd}: no greeting within 20 s")
            time.sleep(0.001)
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def bench_startup(servers: tuple[Server, ...], runs: int) -> dict[str, float]:
    # bytecode as installed (pip compiles a wheel's modules): a work tree run under
    # PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at every start
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "pi_appliance")], check=True)
    res: dict[str, list[float]] = {s.name: [] for s in servers}
    for _ in range(runs):
        for s in servers:
            res[s.name].append(_spawn_to_greeting(s.startup_cmd, s.startup_port))
            time.sleep(0.1)
    return {k: statistics.median(v) for k, v in res.items()}


# --- the table ---


@dataclass
class Row:
    label: str
    key: tuple[str, ...]
    unit: str
    scale: float = 1.0
    goal: Callable[[float, float], bool] | None = None  # (ours, mpd) → met?
    goal_text: str = ""


ROWS = [
    Row("ping round trips/s (python-mpd2)", ("rtt", "ping"), "/s", goal=lambda o, m: o >= m, goal_text=">= mpd"),
    Row("status round trips/s (python-mpd2)", ("rtt", "status"), "/s", goal=lambda o, m: o >= m, goal_text=">= mpd"),
    Row("status round trips/s, playing (ours only)", ("rtt", "status_playing"), "/s"),
    Row(f"pipelined {PIPELINED:,} status/s", ("pipelined",), "/s", goal=lambda o, m: o >= m / 2, goal_text=">= mpd/2"),
    Row("idle latency median", ("idle", "median"), "ms", 1e3, goal=lambda o, m: o < 1e-3, goal_text="< 1 ms"),
    Row("idle latency p99", ("idle", "p99"), "ms", 1e3),
    Row(f"{POLLERS} clients x {POLL_HZ:g}/s status: p99", ("poll", "p99"), "ms", 1e3),
    Row(f"{POLLERS} clients x {POLL_HZ:g}/s status: median", ("poll", "median"), "ms", 1e3),
    Row("start-up to greeting (median)", ("startup",), "ms", 1e3, goal=lambda o, m: o < 0.3, goal_text="< 300 ms"),
    Row("idle RSS", ("rss",), "MB", goal=lambda o, m: o < 40, goal_text="< 40 MB"),
]


def _get(d: dict[str, Any], key: tuple[str, ...]) -> float | None:
    cur: Any = d
    for k in key:
        if not isinstance(cur, dict) or k not in cur:
            return None
        cur = cur[k]
    return float(cur)


def table(res: dict[str, dict[str, Any]]) -> list[str]:
    lines = [f"{'':42} {'ours':>10} {'mpd':>10} {'ours/mpd':>9}   goal"]
    for row in ROWS:
        o, m = _get(res["ours"], row.key), _get(res["mpd"], row.key)
        if o is None:
            continue
        ratio = f"{o / m:.2f}" if m else "-"
        goal = ""
        if row.goal is not None:
            goal = f"{row.goal_text:9} {'met' if row.goal(o, m) else 'MISSED'}"
        unit = f" ({row.unit})" if row.unit != "/s" else ""
        dec = 0 if row.unit in ("/s",) else (1 if row.unit in ("MB",) else 3)
        if row.key == ("startup",):
            dec = 0
        theirs = "-" if m is None else f"{m * row.scale:.{dec}f}"
        lines.append(f"{row.label + unit:42} {o * row.scale:>10.{dec}f} {theirs:>10} {ratio:>9}   {goal}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and samples (a smoke run, ~30 s)")
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    ap.add_argument("--server-cpu", type=int, default=1, help="CPU for both servers (-1: no pinning)")
    ap.add_argument("--client-cpu", type=int, default=0, help="CPU for this client (-1: no pinning)")
    a = ap.parse_args(argv)
    for prog in ("mpd", "mpc"):
        if shutil.which(prog) is None:
            print(f"{prog} is not installed (apt-get install mpd mpc)", file=sys.stderr)
            return 2
    ncpu = len(os.sched_getaffinity(0))
    server_cpu = a.server_cpu if a.server_cpu >= 0 and ncpu > 1 else None
    client_cpu = a.client_cpu if a.client_cpu >= 0 and ncpu > 1 else None
    # many short rounds, the servers taking turns: a neighbour's burst of load hits both alike
    n, rounds = (500, 6) if a.quick else (1000, 15)
    samples = 40 if a.quick else 200
    poll_s, poll_rounds = (2.0, 1) if a.quick else (5.0, 2)
    startup_runs = 3 if a.quick else 10

    load = Path("/proc/loadavg").read_text().split()[:3]
    faulthandler.dump_traceback_later(120 if a.quick else 600, exit=True)  # a stuck run says where, and ends
    print(f"cpus {os.cpu_count()}; servers on cpu {server_cpu}, client on cpu {client_cpu}; load {load}", flush=True)
    with tempfile.TemporaryDirectory(prefix="mpdbench-") as tmpdir:
        ours, theirs = start_servers(Path(tmpdir), server_cpu)
        if client_cpu is not None:
            os.sched_setaffinity(0, {client_cpu})
        servers = (ours, theirs)
        floor = start_floor(server_cpu)
        res: dict[str, dict[str, Any]] = {s.name: {} for s in servers}
        try:
            time.sleep(1.0)
            for s in servers:
                res[s.name]["rss"] = rss_mb(s.pid)
            steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
                ("rtt", lambda: bench_rtt((*servers, floor), n, rounds)),
                ("pipelined", lambda: bench_pipelined(servers, rounds)),
                ("idle", lambda: bench_idle(servers, samples)),
                ("poll", lambda: bench_poll(servers, poll_s, poll_rounds)),
                ("startup", lambda: bench_startup(servers, startup_runs)),
            ]
            for name, fn in steps:
                t = time.perf_counter()
                r = fn()
                for s in servers:
                    res[s.name][name] = r[s.name]
                if name == "rtt":
                    floor.stop()
                    res["floor"] = {"rtt": {"ping": r["floor"]["ping"]}}
                print(f"{name}: {json.dumps(r)}  ({time.perf_counter() - t:.1f} s)", flush=True)
        finally:
            for s in (*servers, floor):
                s.stop()
    print()
    for line in table(res):
        print(line)
    if "floor" in res:
        f, m = res["floor"]["rtt"]["ping"], res["mpd"]["rtt"]["ping"]
        print(f"\nceiling: a CPython server on the same loop answering OK to every line, nothing else: "
              f"{f:.0f} pings/s = {f / m:.2f} of mpd's")  # fmt: skip
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
