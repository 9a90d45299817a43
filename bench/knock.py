"""Knock listener vs knockd, side by side in one run (loopback only, bounded loops, root).

    sudo .venv/bin/python bench/knock.py [--quick] [--json FILE]

Measured for both, each in its own process, one after the other:

1. latency: Debian's ``knock`` client sends a 3-port UDP (and TCP) sequence; from the kernel's
   timestamp of its last packet's arrival on lo (``AF_PACKET``, SO_TIMESTAMPNS) to the action:
   knockd's ``start_command`` writing
   ``date +%s%N``; ours the player callback of the bare listener, and for the whole appliance
   (``pi-appliance --output sim``, sequence → play tune 1) the simulator's first note edge. Median,
   p99, over N tries with random 0-50 ms pauses.
2. spray: 10 s of UDP packets to the door ports from 10,000 spoofed 127.16.x.y sources at
   10k pps (IP_HDRINCL raw socket in a child process, destination 127.0.0.1 only): actions caused.
3. noise: 5 s at 50k pps from random sources to non-door ports: the listener's CPU (% of a core).
4. flood: one packet to a door port from each of 65,536 spoofed sources: RSS before and after.

Ours runs with the packet listener (AF_PACKET + BPF, as knockd's pcap) and, for the latency and
noise rows, with the default socket listener too. Results are printed as a table with ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pi_appliance.knock.listeners import PacketListener
from pi_appliance.knock.packet import build_filter

SEQ = [10077, 10013, 10042]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- spoofed packets (loopback only) ---


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def ip_udp(src: str, dport: int, sport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 9, 0) + b"k"
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        29,
        random.getrandbits(16),
        0,
        64,
        17,
        0,
        socket.inet_aton(src),
        socket.inet_aton("127.0.0.1"),
    )
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + udp


def make_packets(kind: str, n: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    if kind == "spray":
        srcs = [f"127.16.{i // 250}.{i % 250 + 1}" for i in range(10_000)]
        return [ip_udp(rng.choice(srcs), rng.choice(SEQ), rng.randrange(1024, 65000)) for _ in range(n)]
    if kind == "noise":
        return [
            ip_udp(
                f"127.{rng.randrange(16, 32)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                rng.randrange(20000, 60000),
                rng.randrange(1024, 65000),
            )
            for _ in range(n)
        ]
    if kind == "flood65k":
        return [
            ip_udp(f"127.{64 + i // 65536}.{(i >> 8) & 255}.{(i & 255) or 1}", SEQ[i % 3], 2000 + i % 60000)
            for i in range(65_536)
        ]
    raise ValueError(kind)


def _sender(kind: str, rate: int, seconds: float, q: Any) -> None:
    pkts = make_packets(kind, 40_000 if kind != "flood65k" else 0, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
    sent = 0
    t0 = time.perf_counter()
    i = 0
    once = kind == "flood65k"
    while True:
        now = time.perf_counter() - t0
        if (once and i >= len(pkts)) or (not once and now >= seconds):
            break
        due = len(pkts) if once and rate <= 0 else int(now * rate)
        while sent < due and not (once and i >= len(pkts)):
            pkt = pkts[i % len(pkts)]
            assert pkt[16:20] == b"\x7f\x00\x00\x01"
            try:
                s.sendto(pkt, ("127.0.0.1", 0))
            except OSError:
                time.sleep(0.0005)
                continue
            i += 1
            sent += 1
        time.sleep(0.0005)
    q.put((sent, time.perf_counter() - t0))
    s.close()


def send_flood(kind: str, rate: int, seconds: float) -> tuple[int, float]:
    q: Any = mp.Queue()
    p = mp.Process(target=_sender, args=(kind, rate, seconds, q))
    p.start()
    sent, dur = q.get(timeout=seconds + 60)
    p.join()
    return sent, dur


# --- the two contestants, each a process writing "<time_ns> <what>" lines to a hits file ---


class Proc:
    def __init__(self, args: list[str], hits: Path, log: Path) -> None:
        self.hits = hits
        self.out = log.open("w")
        self.p = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT)
        time.sleep(1.0)
        if self.p.poll() is not None:
            raise RuntimeError(f"{args[0]} exited: {log.read_text()}")

    def cpu_ticks(self) -> int:
        parts = Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(parts[11]) + int(parts[12])

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return -1

    def lines(self) -> list[list[str]]:
        return [ln.split() for ln in self.hits.read_text().splitlines() if ln.strip()]

    def stop(self) -> None:
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.p.pid, signal.SIGKILL)
                self.p.wait()
        self.out.close()


def start_knockd(run: Path, name: str, proto: str) -> Proc:
    hits = run / f"{name}.hits"
    hits.write_text("")
    stamp = run / "stamp"
    stamp.write_text('#!/bin/sh\necho "$(date +%s%N) $1" >> "$2"\n')
    stamp.chmod(0o700)
    conf = run / f"{name}.conf"
    conf.write_text(
        f"[options]\n\n[{name}]\n    sequence = {','.join(f'{p}:{proto}' for p in SEQ)}\n    seq_timeout = 5\n"
        f"    tcpflags = syn\n    start_command = {stamp} %IP% {hits}\n"
    )
    conf.chmod(0o600)
    return Proc([shutil.which("knockd") or "/usr/sbin/knockd", "-i", "lo", "-c", str(conf)], hits, run / f"{name}.out")


def start_ours(run: Path, name: str, listener: str, proto: str) -> Proc:
    hits = run / f"{name}.hits"
    hits.write_text("")
    table = {
        "enabled": True,
        "listener": listener,
        "bind": ["127.0.0.1"],
        "interfaces": ["lo"],
        "auth_port": 0,
        "sequence": [
            {"name": "door", "ports": [f"{p}:{proto}" for p in SEQ], "timeout_ms": 5000, "action": "play", "arg": 1}
        ],
        "actions_per_source_per_min": 100_000,
        "actions_per_min": 100_000,
    }
    return Proc(
        [sys.executable, __file__, "serve", json.dumps(table), str(hits), str(run / name)], hits, run / f"{name}.out"
    )


def serve(table_json: str, hits: str, state: str) -> None:
    """The child: our KnockService with actions that stamp the hits file (what the player would get)."""
    from pi_appliance.config import KnockSettings, build_section
    from pi_appliance.knock.service import KnockService

    out = open(hits, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    class Stamp:
        async def play(self, tune: int) -> None:
            out.write(f"{time.time_ns()} play\n")

        async def stop(self) -> None:
            out.write(f"{time.time_ns()} stop\n")

        async def next(self) -> None:
            out.write(f"{time.time_ns()} next\n")

        async def volume(self, volume: int) -> None:
            out.write(f"{time.time_ns()} volume\n")

        async def play_tune(self, tune: Any, title: str) -> None:
            out.write(f"{time.time_ns()} tune\n")

    async def main() -> None:
        settings = build_section(KnockSettings, json.loads(table_json), "bench", "knock")
        svc = KnockService(settings, Stamp(), state)
        await svc.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        print(json.dumps(svc.stats()), flush=True)
        await svc.close()

    asyncio.run(main())


def _sim_config(state: Path, mpd_port: int) -> str:
    stop_ports = [p + 100 for p in SEQ]
    return (
        f'state_dir = "{state}"\n[mpd]\nbind = ["127.0.0.1"]\nport = {mpd_port}\n[output]\nkind = "sim"\n'
        f'[discovery]\nenabled = false\n[knock]\nenabled = true\nauth_port = 0\nbind = ["127.0.0.1"]\n'
        f"actions_per_source_per_min = 100000\nactions_per_min = 100000\n"
        f'[[knock.sequence]]\nname = "play"\nports = {json.dumps([str(p) for p in SEQ])}\ntimeout_ms = 5000\n'
        f'action = "play"\narg = 1\n'
        f'[[knock.sequence]]\nname = "stop"\nports = {json.dumps([str(p) for p in stop_ports])}\n'
        f'action = "stop"\n'
    )


def serve_appliance(cfg_path: str) -> None:
    """The child: output (sim) → player → knock listener, wired as the daemon wires them, minus the
    MPD server (used when the daemon itself cannot run yet)."""
    from pi_appliance import config
    from pi_appliance.knock.actions import PlayerActions
    from pi_appliance.knock.service import KnockService
    from pi_appliance.library import Library
    from pi_appliance.output.select import open_output
    from pi_appliance.player import Player
    from pi_appliance.state import StateStore

    settings = config.load(cfg_path, required=True)
    state = Path(settings.state_dir)

    async def main() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        output = await open_output(settings.output, state_dir=state)
        player = Player(output, Library(state), StateStore(state))
        await player.start()
        svc = KnockService(settings.knock, PlayerActions(player), state)
        await svc.start()
        await stop.wait()
        await svc.close()
        await player.close()
        await output.close()

    asyncio.run(main())


def sim_latency(run: Path, n: int, how: str) -> dict[str, Any]:
    """The appliance with the simulator, a knock sequence playing tune 1 (a stop sequence between
    tries); from the last knock's packet on lo to the simulator's first edge (``sim-edges.jsonl`` wall_ns).
    ``how``: "daemon" runs ``pi-appliance --output sim``; "wired" runs :func:`serve_appliance`."""
    state = run / how
    state.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        mpd_port = s.getsockname()[1]
    cfg = run / f"{how}.toml"
    cfg.write_text(_sim_config(state, mpd_port))
    log = (run / f"{how}.out").open("w")
    if how == "daemon":
        cmd = [sys.executable, "-m", "pi_appliance.daemon", "--config", str(cfg), "--no-mdns", "--log-level", "warning"]
    else:
        cmd = [sys.executable, __file__, "serve-appliance", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    edges = state / "sim-edges.jsonl"
    stop_ports = [p + 100 for p in SEQ]
    try:
        deadline = time.monotonic() + 20
        while not edges.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                return {"error": f"{how} did not start: " + (run / f"{how}.out").read_text()[-300:]}
            time.sleep(0.1)
        time.sleep(1.5)
        knock = shutil.which("knock") or "/usr/bin/knock"
        lat: list[float] = []
        missed = 0
        for _ in range(n):
            subprocess.run([knock, "-u", "127.0.0.1", *map(str, stop_ports)], check=True)
            time.sleep(0.3)
            offset = edges.stat().st_size
            t0 = time.time_ns()
            with LastKnock(SEQ[-1]) as sniffer:
                subprocess.run([knock, "-u", "127.0.0.1", *map(str, SEQ)], check=True)
                t1 = sniffer.arrived_ns()
            if t1 is None:
                return {"error": "the last knock's packet was not seen on lo"}
            if proc.poll() is not None:
                return {"error": f"{how} exited: " + (run / f"{how}.out").read_text()[-300:]}
            first = None
            limit = time.monotonic() + 2.0
            while first is None and time.monotonic() < limit:
                with edges.open() as f:
                    f.seek(offset)
                    for line in f:
                        if not line.endswith("\n"):
                            break
                        rec = json.loads(line)
                        if "level" in rec and rec.get("wall_ns", 0) >= t0:
                            first = int(rec["wall_ns"])
                            break
                if first is None:
                    time.sleep(0.0005)
            if first is None:
                missed += 1
            else:
                lat.append((first - t1) / 1e6)
            time.sleep(random.uniform(0, 0.05))
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    return latencies(lat, n, missed)


# --- when the last knock left: the kernel's timestamp of its packet on lo ---

SO_TIMESTAMPNS = 35  # Linux; the socket module does not export it
ETH_P_ALL = 0x0003


class LastKnock:
    """An ``AF_PACKET`` socket on ``lo`` that passes (in-kernel, the listener's own BPF program) only
    packets to ``port``, with kernel receive timestamps on CLOCK_REALTIME, the clock knockd's
    ``date +%s%N`` and the simulator's ``wall_ns`` use. Open it before the knock; :meth:`arrived_ns`
    is when the packet to ``port`` arrived. The knock client exits later, so timing from its exit
    makes everything look faster than it is (the bare listener even negative)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        PacketListener._attach(self.sock, build_filter([(port, port)], [(port, port)]))
        self.sock.bind(("lo", 0))
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)

    def arrived_ns(self, timeout: float = 2.0) -> int | None:
        self.sock.settimeout(timeout)
        try:
            _data, anc, _flags, _addr = self.sock.recvmsg(256, socket.CMSG_SPACE(16))
        except TimeoutError:
            return None
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", raw[:16])
                return sec * 1_000_000_000 + nsec
        return None

    def __enter__(self) -> LastKnock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# --- measurements ---


def q(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, round(p * (len(v) - 1)))]


def latencies(lat: list[float], n: int, missed: int) -> dict[str, Any]:
    """Median, p99 and max of ``lat`` (ms) out of ``n`` tries."""
    if not lat:
        return {"n": n, "missed": missed}
    return {
        "n": n,
        "missed": missed,
        "median_ms": round(statistics.median(lat), 3),
        "p99_ms": round(q(lat, 0.99), 3),
        "max_ms": round(max(lat), 3),
    }


def latency(proc: Proc, proto: str, n: int) -> dict[str, Any]:
    knock = shutil.which("knock") or "/usr/bin/knock"
    lat: list[float] = []
    missed = 0
    for _ in range(n):
        before = len(proc.lines())
        args = [knock, *(["-u"] if proto == "udp" else []), "127.0.0.1", *map(str, SEQ)]
        with LastKnock(SEQ[-1]) as sniffer:
            subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
            t1 = sniffer.arrived_ns()
        if t1 is None:
            raise RuntimeError("the last knock's packet was not seen on lo")
        deadline = time.monotonic() + 2.0
        while len(proc.lines()) <= before and time.monotonic() < deadline:
            time.sleep(0.0005)
        got = proc.lines()
        if len(got) <= before:
            missed += 1
        else:
            lat.append((int(got[before][0]) - t1) / 1e6)
        time.sleep(random.uniform(0, 0.05))
    return latencies(lat, n, missed)


def spray(proc: Proc, seconds: float, rate: int) -> dict[str, Any]:
    before = len(proc.lines())
    c0, w0 = proc.cpu_ticks(), time.time()
    sent, dur = send_flood("spray", rate, seconds)
    time.sleep(0.5)
    c1, w1 = proc.cpu_ticks(), time.time()
    return {
        "sent": sent,
        "pps": int(sent / dur),
        "actions": len(proc.lines()) - before,
        "cpu_pct": round(100.0 * (c1 - c0) / CLK_TCK / (w1 - w0), 1),
    }


def noise(proc: Proc, seconds: float, rate: int) -> dict[str, Any]:
    time.sleep(0.3)
    c0, w0 = proc.cpu_ticks(), time.time()
    sent, dur = send_flood("noise", rate, seconds)
    c1, w1 = proc.cpu_ticks(), time.time()
    return {"pps": int(sent / dur), "cpu_pct": round(100.0 * (c1 - c0) / CLK_TCK / (w1 - w0), 2)}


def flood65k(proc: Proc) -> dict[str, Any]:
    rss0 = proc.rss_kib()
    sent, _ = send_flood("flood65k", 30_000, 0)
    time.sleep(1.0)
    return {"sources": sent, "rss_before_kib": rss0, "rss_after_kib": proc.rss_kib(), "grew_kib": proc.rss_kib() - rss0}


def main(argv: list[str]) -> int:
    if argv[:1] == ["serve"]:
        serve(*argv[1:4])
        return 0
    if argv[:1] == ["serve-appliance"]:
        serve_appliance(argv[1])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer tries and shorter floods (a smoke run)")
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/knock.py needs root (raw sockets, AF_PACKET, knockd)", file=sys.stderr)
        return 2
    for prog in ("knock", "knockd"):
        if shutil.which(prog) is None and not Path(f"/usr/sbin/{prog}").exists():
            print(f"{prog} is not installed (apt-get install knockd)", file=sys.stderr)
            return 2
    n = 20 if args.quick else 100
    spray_s = 3.0 if args.quick else 10.0
    noise_s = 2.0 if args.quick else 5.0
    run = Path(tempfile.mkdtemp(prefix="knock-bench-"))
    run.chmod(0o700)
    res: dict[str, Any] = {"n": n, "spray_s": spray_s, "noise_s": noise_s}
    contestants = [
        ("knockd", lambda name, proto: start_knockd(run, name, proto)),
        ("ours-packet", lambda name, proto: start_ours(run, name, "packet", proto)),
        ("ours-socket", lambda name, proto: start_ours(run, name, "socket", proto)),
    ]
    try:
        for how in ("daemon", "wired"):
            res[f"ours-{how}"] = {"latency_udp_to_first_edge": sim_latency(run, n, how)}
            print(f"ours-{how}", json.dumps(res[f"ours-{how}"]), flush=True)
        for who, start in contestants:
            r: dict[str, Any] = {}
            for proto in ("udp", "tcp"):
                if who == "ours-socket" and proto == "tcp":
                    continue  # a bound socket listener does not take TCP knocks (it would answer them)
                p = start(f"{who}-{proto}", proto)
                try:
                    r[f"latency_{proto}"] = latency(p, proto, n)
                    if proto == "udp":
                        r["idle_rss_kib"] = p.rss_kib()
                        r["noise_50k"] = noise(p, noise_s, 50_000)
                finally:
                    p.stop()
            p = start(f"{who}-spray", "udp")
            try:
                r["spray_10k_sources"] = spray(p, spray_s, 10_000)
            finally:
                p.stop()
            p = start(f"{who}-flood", "udp")
            try:
                r["flood_65k_sources"] = flood65k(p)
            finally:
                p.stop()
            res[who] = r
            print(who, json.dumps(r), flush=True)
    finally:
        shutil.rmtree(run, ignore_errors=True)
    report(res)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


def report(res: dict[str, Any]) -> None:
    k = res["knockd"]
    print()
    print(f"{'':34} {'knockd':>12} {'ours-packet':>12} {'ours-socket':>12}   ratio knockd/ours-packet")
    rows = [
        ("latency udp median (ms)", lambda r: r.get("latency_udp", {}).get("median_ms")),
        ("latency udp p99 (ms)", lambda r: r.get("latency_udp", {}).get("p99_ms")),
        ("latency tcp median (ms)", lambda r: r.get("latency_tcp", {}).get("median_ms")),
        ("latency tcp p99 (ms)", lambda r: r.get("latency_tcp", {}).get("p99_ms")),
        (f"spray {res['spray_s']:.0f} s 10k sources: actions", lambda r: r["spray_10k_sources"]["actions"]),
        ("spray: pps achieved", lambda r: r["spray_10k_sources"]["pps"]),
        ("spray: CPU %", lambda r: r["spray_10k_sources"]["cpu_pct"]),
        ("noise 50k pps: CPU %", lambda r: r["noise_50k"]["cpu_pct"]),
        ("noise: pps achieved", lambda r: r["noise_50k"]["pps"]),
        ("idle RSS (KiB)", lambda r: r["idle_rss_kib"]),
        ("RSS after 65k-source flood (KiB)", lambda r: r["flood_65k_sources"]["rss_after_kib"]),
        ("RSS growth in that flood (KiB)", lambda r: r["flood_65k_sources"]["grew_kib"]),
    ]
    for how, what in (("daemon", "pi-appliance --output sim"), ("wired", "output+player+knock, no MPD")):
        d = res.get(f"ours-{how}", {}).get("latency_udp_to_first_edge", {})
        if "median_ms" not in d:
            print(f"{what}: {d}")
            continue
        print(
            f"{what}: last knock -> first note edge: median {d['median_ms']} ms, p99 {d['p99_ms']} ms"
            f" (knockd's command: {k['latency_udp']['median_ms']} / {k['latency_udp']['p99_ms']} ms;"
            f" median ratio {k['latency_udp']['median_ms'] / max(d['median_ms'], 0.001):.1f}x)"
        )
    for label, get in rows:
        vals = [get(res[w]) for w in ("knockd", "ours-packet", "ours-socket")]
        ratio = ""
        if isinstance(vals[0], int | float) and isinstance(vals[1], int | float) and vals[1]:
            ratio = f"{vals[0] / vals[1]:.1f}x"
        print(f"{label:34} " + " ".join(f"{'-' if v is None else v:>12}" for v in vals) + f"   {ratio}")
    del k


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
