"""The knock listener over real sockets: Debian's ``knock`` client, ``pictl knock``, spoofed floods
and scans through an IP_HDRINCL raw socket (127.0.0.0/8 only), unprivileged runs via setpriv.
Property numbers refer to research/knock.md section 5."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import need_program
from test_knock_helpers import (
    KEY,
    RawSender,
    Recorder,
    pick_ports,
    settings,
    spoofed_sources,
    tcp_packet,
    udp_packet,
)

from pi_appliance.knock import auth
from pi_appliance.knock.auth import KnockError
from pi_appliance.knock.client import knock_main
from pi_appliance.knock.service import KnockService
from pi_appliance.music.model import Note

ROOT = Path(__file__).resolve().parent.parent


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("this test needs root (raw sockets, AF_PACKET, setpriv); run the suite as root")


@contextlib.asynccontextmanager
async def running(state: Path, table: dict[str, Any], **kw: Any) -> AsyncIterator[tuple[KnockService, Recorder]]:
    rec = Recorder()
    svc = KnockService(settings(**table), rec, state, **kw)
    await svc.start()
    try:
        yield svc, rec
    finally:
        await svc.close()


async def knock_client(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(need_program("knock"), *args, stdout=asyncio.subprocess.DEVNULL)
    assert await proc.wait() == 0


def write_key(path: Path, key: bytes = KEY, mode: int = 0o600) -> Path:
    path.write_text(key.hex() + "\n")
    path.chmod(mode)
    return path


def seq_table(ports: list[int], proto: str = "udp", **kw: Any) -> dict[str, Any]:
    return {"name": "door", "ports": [f"{p}:{proto}" for p in ports], "action": "play", "arg": 2, **kw}


def pool_table(base: int, protocols: list[str]) -> dict[str, Any]:
    return {
        "enabled": True,
        "sources": ["127.0.0.0/8"],
        "tone_port": base,
        "silence_port": base + 1,
        "play_port": base + 2,
        "clear_port": base + 3,
        "protocols": protocols,
    }


MELODY = "TTSTSSTTT"
EXPECTED = (Note(880.0, 200_000), Note.rest(100_000), Note(880.0, 100_000), Note.rest(200_000), Note(880.0, 300_000))


def melody_ports(base: int, proto: str = "udp") -> list[str]:
    return [f"{base if t == 'T' else base + 1}:{proto}" for t in MELODY] + [f"{base + 2}:{proto}"]


# --- Debian's knock client: sequences and the pool, UDP (bound sockets) and TCP (AF_PACKET) ---


async def test_knock_client_udp_sequence_and_pool_socket_listener(tmp_path: Path) -> None:
    ports = pick_ports(3)
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    table = {"sequence": [seq_table(ports)], "pool": pool_table(pool, ["udp"]), "bind": ["127.0.0.1"], "guard": 4}
    async with running(tmp_path, table) as (_svc, rec):
        await knock_client("-u", "127.0.0.1", *map(str, ports))
        assert await rec.wait(1)
        assert rec.calls[0][:2] == ("play", 2)
        await knock_client("127.0.0.1", *melody_ports(pool))
        assert await rec.wait(2)
        kind, tune, title, _ = rec.calls[1]
        assert kind == "tune" and tune.notes == EXPECTED and "127.0.0.1" in title


async def test_knock_client_tcp_sequence_and_pool_packet_listener(tmp_path: Path) -> None:
    need_root()
    ports = pick_ports(3)
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    table = {
        "sequence": [seq_table(ports, "tcp")],
        "pool": pool_table(pool, ["tcp", "udp"]),
        "listener": "packet",
        "interfaces": ["lo"],
    }
    async with running(tmp_path, table) as (_svc, rec):
        await knock_client("127.0.0.1", *(f"{p}:tcp" for p in ports))
        assert await rec.wait(1)
        assert rec.calls[0][:2] == ("play", 2)
        await knock_client("127.0.0.1", *melody_ports(pool, "tcp"))
        assert await rec.wait(2)
        assert rec.calls[1][0] == "tune" and rec.calls[1][1].notes == EXPECTED
        await knock_client("-u", "127.0.0.1", *melody_ports(pool, "udp"))
        assert await rec.wait(3)
        assert rec.calls[2][1].notes == EXPECTED


async def test_knock_client_ipv6(tmp_path: Path) -> None:
    ports = pick_ports(3)
    table = {"sequence": [seq_table(ports)], "bind": ["::1"], "guard": 2}
    async with running(tmp_path, table) as (_svc, rec):
        await knock_client("-6", "-u", "::1", *map(str, ports))
        assert await rec.wait(1)


async def test_knock_client_clock_sequence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = write_key(tmp_path / "tick.key")
    table = {
        "clock_sequence": [
            {"name": "tick", "key_file": str(key), "port_min": 24000, "port_max": 24999, "action": "next"}
        ],
        "bind": ["127.0.0.1"],
        "guard": 3,
    }
    async with running(tmp_path / "s", table) as (svc, rec):
        assert knock_main(["ports", "tick", "--key", str(key), "--port-min", "24000", "--port-max", "24999"]) == 0
        ports = capsys.readouterr().out.split()
        assert len(ports) == 3 and all(p.endswith(":udp") for p in ports)
        await knock_client("127.0.0.1", *ports)
        assert await rec.wait(1), svc.stats()
        assert rec.calls[0][0] == "next"
        await knock_client("127.0.0.1", *ports)  # the same window again: used up
        await asyncio.sleep(0.3)
        assert len(rec.calls) == 1


# --- authenticated knocks with pictl knock ---


def auth_table(tmp_path: Path, port: int, key: Path | None = None) -> dict[str, Any]:
    key = key or write_key(tmp_path / "alice.key")
    return {"auth_port": port, "key": [{"id": "alice", "file": str(key)}], "bind": ["127.0.0.1"]}


def send(payload: bytes, port: int, src: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        s.sendto(payload, ("127.0.0.1", port))


async def test_pictl_knock_keygen_and_play(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "laptop.key"
    assert knock_main(["keygen", str(key)]) == 0
    assert key.stat().st_mode & 0o777 == 0o600
    assert 'id = "laptop"' in capsys.readouterr().out
    assert knock_main(["keygen", str(key)]) == 1  # never overwrites silently
    port = pick_ports(1)[0]
    table = {"auth_port": port, "key": [{"id": "laptop", "file": str(key)}], "bind": ["127.0.0.1"]}
    async with running(tmp_path / "state", table) as (svc, rec):
        assert knock_main(["127.0.0.1", "play", "3", "--key", str(key), "--port", str(port)]) == 0
        assert knock_main(["127.0.0.1", "volume", "40", "--key", str(key), "--port", str(port)]) == 0
        assert knock_main(["127.0.0.1", "stop", "--key", str(key), "--port", str(port), "--key-id", "laptop"]) == 0
        assert await rec.wait(3)
        assert [c[:-1] for c in rec.calls] == [("play", 3), ("volume", 40), ("stop",)]
        # a key the appliance does not know does nothing
        other = tmp_path / "other.key"
        assert knock_main(["keygen", str(other)]) == 0
        assert knock_main(["127.0.0.1", "next", "--key", str(other), "--port", str(port)]) == 0
        await asyncio.sleep(0.2)
        assert len(rec.calls) == 3 and svc.stats()["auth_bad_mac"] == 1
    assert knock_main(["127.0.0.1", "play", "--key", str(key)]) == 1
    assert knock_main(["127.0.0.1", "play", "0", "--key", str(key)]) == 1
    assert knock_main(["127.0.0.1", "dance", "--key", str(key)]) == 2


async def test_pictl_dispatches_knock(tmp_path: Path) -> None:
    """The real ``pictl`` command line: ``pictl knock keygen`` and ``pictl knock HOST play N --key``."""
    pictl = [sys.executable, "-m", "pi_appliance.cli.pictl"]
    key = tmp_path / "desk.key"
    made = subprocess.run([*pictl, "knock", "keygen", str(key)], capture_output=True, text=True, timeout=30)
    assert made.returncode == 0 and 'id = "desk"' in made.stdout, made.stderr
    port = pick_ports(1)[0]
    table = {"auth_port": port, "key": [{"id": "desk", "file": str(key)}], "bind": ["127.0.0.1"]}
    async with running(tmp_path / "state", table) as (_svc, rec):
        proc = await asyncio.create_subprocess_exec(
            *pictl, "knock", "127.0.0.1", "play", "2", "--key", str(key), "--port", str(port)
        )
        assert await proc.wait() == 0
        assert await rec.wait(1)
        assert rec.calls[0][:2] == ("play", 2)


async def test_auth_knock_over_ipv6_and_its_replay(tmp_path: Path) -> None:
    key = write_key(tmp_path / "alice.key")
    port = pick_ports(1)[0]
    table = {"auth_port": port, "key": [{"id": "alice", "file": str(key)}], "bind": ["::1"]}
    async with running(tmp_path / "s", table) as (svc, rec):
        assert knock_main(["::1", "volume", "55", "--key", str(key), "--port", str(port)]) == 0
        assert await rec.wait(1)
        assert rec.calls[0][:2] == ("volume", 55)
        dg = auth.encode(KEY, "alice", "stop", 0, time.time_ns() // 1_000_000, os.urandom(16))
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            s6.sendto(dg, ("::1", port))
            s6.sendto(dg, ("::1", port))
        assert await rec.wait(2)
        await asyncio.sleep(0.2)
        assert len(rec.calls) == 2 and svc.stats()["auth_replay"] == 1


async def test_p1_p2_replay_after_1s_10min_restart_and_from_another_source(tmp_path: Path) -> None:
    port = pick_ports(1)[0]
    table = auth_table(tmp_path, port)
    state = tmp_path / "state"
    dg = auth.encode(KEY, "alice", "play", 1, time.time_ns() // 1_000_000, os.urandom(16))
    async with running(state, table) as (svc, rec):
        send(dg, port)
        assert await rec.wait(1)
        await asyncio.sleep(1.0)
        send(dg, port)  # 1 s later
        send(dg, port, "127.0.0.2")  # from another source
        await asyncio.sleep(0.2)
        assert len(rec.calls) == 1 and svc.stats()["auth_replay"] == 2
    async with running(state, table) as (svc, rec):  # after a restart
        send(dg, port)
        send(dg, port, "127.0.0.3")
        await asyncio.sleep(0.3)
        assert rec.calls == [] and svc.stats()["auth_replay"] == 2
    later = lambda: time.time_ns() // 1_000_000 + 600_000  # noqa: E731 - a clock 10 min ahead
    async with running(state, table, wall_ms=later) as (svc, rec):
        send(dg, port)
        await asyncio.sleep(0.3)
        assert rec.calls == [] and svc.stats()["auth_stale"] == 1
    # the cache file is private and holds MACs only
    assert (state / "knock-replay.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((state / "knock-replay.json").read_text())["auth"][0][0] == dg[-32:].hex()


async def test_p3_every_bit_flip_over_the_wire(tmp_path: Path) -> None:
    port = pick_ports(1)[0]
    dg = auth.encode(KEY, "alice", "next", 0, time.time_ns() // 1_000_000, os.urandom(16))
    async with running(tmp_path / "s", auth_table(tmp_path, port)) as (svc, rec):
        for bit in range(len(dg) * 8):
            bad = bytearray(dg)
            bad[bit // 8] ^= 1 << (bit % 8)
            send(bytes(bad), port)
            if bit % 64 == 0:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)
        assert rec.calls == [] and svc.stats()["auth_bad_mac"] == len(dg) * 8
        send(dg, port)
        assert await rec.wait(1)


# --- spoofed floods (root: raw sockets) ---


def flood(packets: list[bytes], seconds: float, pps: int) -> int:
    """Send ``packets`` round-robin at about ``pps`` for ``seconds`` from a raw socket; returns the count."""
    sent = 0
    with RawSender() as raw:
        t0 = time.perf_counter()
        i = 0
        while True:
            now = time.perf_counter() - t0
            if now >= seconds:
                return sent
            due = int(now * pps)
            while sent < due:
                raw.send(packets[i])
                i = (i + 1) % len(packets)
                sent += 1
            time.sleep(0.001)


@pytest.mark.parametrize("listener", ["socket", "packet"])
async def test_p5_spoofed_spray_from_10k_sources_causes_nothing(tmp_path: Path, listener: str) -> None:
    need_root()
    ports = pick_ports(3)
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    table = {
        "sequence": [seq_table(ports)],
        "pool": pool_table(pool, ["udp"]),
        "bind": ["127.0.0.1"],
        "listener": listener,
        "interfaces": ["lo"],
        "guard": 4,
        "spray_hold_ms": 1000,
    }
    targets = [*ports, pool, pool + 1, pool + 2, pool + 3]
    rng = random.Random(1)
    srcs = spoofed_sources(10_000)
    pkts = [udp_packet(rng.choice(srcs), rng.choice(targets), rng.randrange(1024, 65535)) for _ in range(40_000)]
    async with running(tmp_path, table) as (svc, rec):
        sent = await asyncio.to_thread(flood, pkts, 3.0, 10_000)
        await asyncio.sleep(0.3)
        stats = svc.stats()
        assert rec.calls == [], stats
        assert stats["packets"] > sent * 0.5 and stats["sequence_sources"] <= 1024
        await asyncio.sleep(1.2)  # the spray is over: a real knock works again
        await knock_client("-u", "127.0.0.1", *map(str, ports))
        assert await rec.wait(1), svc.stats()


def syn_scan(src: str, ports: list[int], sport: int = 45000) -> None:
    with RawSender() as raw:
        for p in ports:
            raw.send(tcp_packet(src, p, sport))


def udp_scan(src: str, ports: list[int]) -> None:
    with RawSender() as raw:
        for p in ports:
            raw.send(udp_packet(src, p, 45001))


def connect_scan(src: str, ports: list[int]) -> None:
    for p in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((src, 0))
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", p))


async def test_p6_p21_scans_in_every_order_cause_nothing(tmp_path: Path) -> None:
    """Full SYN and UDP scans of 1..65535 (ascending, descending, random) and connect scans of
    the knock range against an ascending and a descending door and the pool (TCP and UDP): no
    action, no sound, and the scanner's next valid knock still works."""
    need_root()
    asc = pick_ports(3)
    desc = pick_ports(3)[::-1]
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    table = {
        "sequence": [
            seq_table(asc, "tcp"),
            {**seq_table(desc), "name": "desc", "action": "stop"},
            {**seq_table(asc), "name": "ascu", "action": "next"},
        ],
        "pool": pool_table(pool, ["tcp", "udp"]),
        "listener": "packet",
        "interfaces": ["lo"],
    }
    full = list(range(1, 65536))
    rng = random.Random(6)
    scans: list[tuple[str, list[int]]] = [("syn", full), ("syn", full[::-1]), ("udp", full), ("udp", full[::-1])]
    for kind in ("syn", "udp", "syn"):
        order = full[:]
        rng.shuffle(order)
        scans.append((kind, order))
    lo, hi = min(asc + desc + [pool]) - 40, max(asc + desc + [pool]) + 40
    near = [p for p in range(lo, hi) if p < 30000 or pool - 40 <= p <= pool + 40]
    scans += [("connect", near), ("connect", near[::-1])]
    async with running(tmp_path, table) as (svc, rec):
        for n, (kind, order) in enumerate(scans):
            src = f"127.0.6.{n + 1}"
            fn = {"syn": syn_scan, "udp": udp_scan, "connect": connect_scan}[kind]
            await asyncio.to_thread(fn, src, order)
            await asyncio.sleep(0.2)
            assert rec.calls == [], (kind, n, svc.stats())
            # no state left that changes the scanner's next valid knock (a new connection: new source port)
            await asyncio.to_thread(syn_scan, src, asc, 46000)
            assert await rec.wait(1), (kind, n, svc.stats())
            assert rec.calls[0][:2] == ("play", 2)
            rec.calls.clear()
        assert svc.stats().get("pool_play", 0) == 0


async def test_p7_state_bounded_under_65k_sources(tmp_path: Path) -> None:
    need_root()
    ports = pick_ports(3)
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    table = {
        "sequence": [seq_table(ports)],
        "pool": pool_table(pool, ["udp"]),
        "listener": "packet",
        "interfaces": ["lo"],
        "max_sources": 1024,
    }
    srcs = spoofed_sources(65_536, second_octet=64)
    pkts = [udp_packet(s, ports[i % 3] if i % 2 else pool, 2000 + i % 60000) for i, s in enumerate(srcs)]
    async with running(tmp_path, table) as (svc, _rec):
        rss0 = _rss_kib()
        await asyncio.to_thread(flood, pkts, 3.0, 30_000)
        await asyncio.sleep(0.3)
        stats = svc.stats()
        assert stats["sequence_sources"] <= 1024 and stats["pool_sources"] <= 1024
        assert stats["budget_sources"] <= 1024 and stats["packets"] > 40_000, stats
        grew = _rss_kib() - rss0
        assert grew < 2048, f"RSS grew {grew} KiB"


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def test_p10_one_spoofed_packet_in_a_knock_never_cancels_it(tmp_path: Path) -> None:
    need_root()
    ports = pick_ports(3)
    table = {"sequence": [seq_table(ports)], "listener": "packet", "interfaces": ["lo"]}
    async with running(tmp_path, table) as (_svc, rec):
        with RawSender() as raw:
            for i, inject in enumerate([ports[2], ports[0], ports[1] + 3, ports[0] - 1] * 2):
                send(b"x", ports[0])
                raw.send(udp_packet("127.0.0.1", inject, 33333))  # claims the knocker's address
                send(b"x", ports[1])
                send(b"x", ports[2])
                assert await rec.wait(i + 1), i
                await asyncio.sleep(0.15)


async def test_p11_syn_retransmits_and_duplicates_count_once(tmp_path: Path) -> None:
    need_root()
    ports = pick_ports(3)
    table = {
        "sequence": [seq_table(ports, "tcp"), {**seq_table([p + 1000 for p in ports]), "name": "u"}],
        "listener": "packet",
        "interfaces": ["lo"],
    }
    async with running(tmp_path, table) as (svc, rec):
        with RawSender() as raw:
            for i, p in enumerate(ports):
                pkt = tcp_packet("127.0.7.1", p, 41000 + i, seq=1234 + i)
                raw.send(pkt)
                raw.send(pkt)  # retransmitted SYN: same source port, same sequence number
            for i, p in enumerate(ports):
                pkt = udp_packet("127.0.7.2", p + 1000, 42000 + i)
                raw.send(pkt)
                raw.send(pkt)  # duplicated datagram
        await asyncio.sleep(0.3)
        assert [c[0] for c in rec.calls] == ["play", "play"]
        assert svc.stats()["sequence_ok"] == 2


async def test_p13_odd_packets_over_the_wire(tmp_path: Path) -> None:
    need_root()
    port = pick_ports(1)[0]
    ports = pick_ports(3)
    key = write_key(tmp_path / "alice.key")
    for listener in ("socket", "packet"):
        table = {
            "auth_port": port,
            "key": [{"id": "alice", "file": str(key)}],
            "bind": ["127.0.0.1"],
            "listener": listener,
            "interfaces": ["lo"],
            "sequence": [seq_table(ports)],
            "guard": 4,
        }
        async with running(tmp_path / listener, table) as (svc, rec):
            for n in (0, 1, auth.LENGTH - 1, auth.LENGTH + 1, 1472, 65507):
                send(os.urandom(n), port)
                send(os.urandom(n), ports[0])
            with RawSender() as raw:
                base = udp_packet("127.0.8.1", port, 1, os.urandom(81))
                for cut in range(len(base)):
                    with contextlib.suppress(OSError):
                        raw.send(base[:cut] if cut >= 20 else base[:20])
                frag = bytearray(udp_packet("127.0.8.2", ports[0], 2, b"y" * 40))
                frag[6:8] = (0x2000).to_bytes(2, "big")  # first fragment, more to come
                raw.send(bytes(frag))
                bad_ihl = bytearray(udp_packet("127.0.8.3", ports[0]))
                bad_ihl[0] = 0x4F
                with contextlib.suppress(OSError):
                    raw.send(bytes(bad_ihl))
            if listener == "socket":  # 10^5 random datagrams to the auth port through a real socket
                sent = await asyncio.to_thread(_fuzz_datagrams, [port], 100_000)
                assert sent == 100_000
                await asyncio.sleep(0.3)
                assert svc.stats()["auth_bad_mac"] > 50_000  # most got in (a full buffer drops some)
            await asyncio.sleep(0.3)
            assert svc.errors == 0 and rec.calls == [], svc.stats()
            send(auth.encode(KEY, "alice", "next", 0, time.time_ns() // 1_000_000, os.urandom(16)), port)
            assert await rec.wait(1), listener


def _fuzz_datagrams(ports: list[int], n: int) -> int:
    rng = random.Random(13)
    lengths = [0, 1, auth.LENGTH - 1, auth.LENGTH, auth.LENGTH + 1, 200]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(n):
            s.sendto(rng.randbytes(rng.choice(lengths)), ("127.0.0.1", ports[i % len(ports)]))
            if i % 2000 == 0:
                time.sleep(0.002)  # let the listener keep up (drops are fine, but we want most in)
    return n


# --- privileges and failing closed (15, 18) ---

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from test_knock_helpers import Recorder, settings
    from pi_appliance.knock.service import KnockService
    from pi_appliance.knock.auth import KnockError

    async def main():
        rec = Recorder()
        svc = KnockService(settings(**json.loads(sys.argv[1])), rec, sys.argv[2])
        try:
            await svc.start()
        except KnockError as e:
            print("REFUSED", e, flush=True)
            return
        caps = [l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("CapEff")][0]
        print("READY", caps.split()[1], flush=True)
        await rec.wait(1, timeout=10)
        print("ACTIONS", [c[0] for c in rec.calls], flush=True)
        await svc.close()

    asyncio.run(main())
    """
)


def run_as_nobody(table: dict[str, Any], caps: str = "", then: Any = None) -> list[str]:
    """Run the service as nobody (uid 65534) with no capabilities, or only ``caps``."""
    need_root()
    need_program("setpriv")
    work = Path(tempfile.mkdtemp(prefix="knock-nobody-"))
    try:
        work.chmod(0o755)
        state = work / "state"
        state.mkdir()
        os.chown(state, 65534, 65534)
        script = work / "child.py"
        script.write_text(CHILD.format(tests=str(ROOT / "tests")))
        script.chmod(0o644)
        table = json.loads(json.dumps(table).replace("@WORK@", str(work)))
        for k in table.get("key", []):
            write_key(Path(k["file"]))
            os.chown(k["file"], 65534, 65534)
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        if caps:
            cmd += [f"--inh-caps=+{caps}", f"--ambient-caps=+{caps}"]
        cmd += [sys.executable, str(script), json.dumps(table), str(state)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=str(work))
        assert proc.stdout is not None
        lines = []
        try:
            first = proc.stdout.readline().strip()
            lines.append(first)
            if first.startswith("READY") and then is not None:
                then()
            out, _ = proc.communicate(timeout=20)
            lines += out.splitlines()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return lines
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_p15_runs_unprivileged_on_a_high_port() -> None:
    port = pick_ports(1)[0]
    table = {"auth_port": port, "key": [{"id": "alice", "file": "@WORK@/alice.key"}], "bind": ["127.0.0.1"]}
    dg = auth.encode(KEY, "alice", "stop", 0, time.time_ns() // 1_000_000, os.urandom(16))
    lines = run_as_nobody(table, then=lambda: send(dg, port))
    assert lines[0] == "READY 0000000000000000", lines  # no capabilities at all
    assert "ACTIONS ['stop']" in lines, lines


def test_p15_packet_listener_with_only_cap_net_raw() -> None:
    ports = pick_ports(3)
    table = {"sequence": [seq_table(ports)], "listener": "packet"}  # every interface

    def knock() -> None:
        for p in ports:
            send(b"x", p)

    lines = run_as_nobody(table, caps="net_raw", then=knock)
    assert lines[0] == "READY 0000000000002000", lines  # CAP_NET_RAW (bit 13) only
    assert "ACTIONS ['play']" in lines, lines


def test_p18_refuses_privileged_port_and_packet_socket_without_capabilities() -> None:
    lines = run_as_nobody({"sequence": [seq_table([1010, 1050, 1090])], "bind": ["127.0.0.1"]})
    assert lines[0].startswith("REFUSED") and "CAP_NET_BIND_SERVICE" in lines[0], lines
    lines = run_as_nobody({"sequence": [seq_table(pick_ports(3))], "listener": "packet"})
    assert lines[0].startswith("REFUSED") and "CAP_NET_RAW" in lines[0], lines


async def test_p18_refuses_missing_or_readable_keys_and_a_damaged_cache(tmp_path: Path) -> None:
    port = pick_ports(1)[0]
    missing = {"auth_port": port, "key": [{"id": "a", "file": str(tmp_path / "nope.key")}], "bind": ["127.0.0.1"]}
    with pytest.raises(KnockError, match="missing"):
        async with running(tmp_path, missing):
            pass
    for mode in (0o640, 0o604, 0o644, 0o660):
        key = write_key(tmp_path / "open.key", mode=mode)
        table = {**missing, "key": [{"id": "a", "file": str(key)}]}
        with pytest.raises(KnockError, match="chmod 600"):
            async with running(tmp_path, table):
                pass
    clock = {"clock_sequence": [{"name": "c", "key_file": str(tmp_path / "open.key")}], "bind": ["127.0.0.1"]}
    with pytest.raises(KnockError, match="group or others"):
        async with running(tmp_path, clock):
            pass
    state = tmp_path / "state"
    state.mkdir()
    (state / "knock-replay.json").write_text("{not json")
    good = {**missing, "key": [{"id": "a", "file": str(write_key(tmp_path / "ok.key"))}]}
    with pytest.raises(KnockError, match="damaged replay cache"):
        async with running(state, good):
            pass


# --- never answers (20) ---


async def test_p20_never_replies_and_looks_filtered(tmp_path: Path) -> None:
    ports = pick_ports(3)
    port = pick_ports(1)[0]
    closed = pick_ports(1)[0]
    table = {**auth_table(tmp_path, port), "sequence": [seq_table(ports)], "guard": 2}
    dg = auth.encode(KEY, "alice", "stop", 0, time.time_ns() // 1_000_000, os.urandom(16))

    def probe(target: int, payload: bytes = b"x") -> str:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.3)
            s.connect(("127.0.0.1", target))
            s.send(payload)
            try:
                s.recv(100)
                return "answered"
            except ConnectionRefusedError:
                return "closed"
            except TimeoutError:
                return "silent"

    async with running(tmp_path / "s", table) as (_svc, rec):
        assert await asyncio.to_thread(probe, closed) == "closed"  # the control: ICMP would show
        for p in [*ports, port]:
            assert await asyncio.to_thread(probe, p) == "silent"
        assert await asyncio.to_thread(probe, port, dg) == "silent"  # even a valid knock gets no answer
        assert await rec.wait(1)


# --- logging stays bounded under a flood (16) ---


async def test_logging_rate_limited_under_flood(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ports = pick_ports(3)
    table = {
        "sequence": [{**seq_table(ports[:1]), "ports": [str(ports[0])]}],
        "bind": ["127.0.0.1"],
        "log_lines_per_min": 5,
        "actions_per_min": 1000,
        "actions_per_source_per_min": 1000,
        "spray_sources_per_s": 10_000,
        "guard": 0,
    }
    caplog.set_level("INFO", logger="pi_appliance.knock")
    async with running(tmp_path, table) as (svc, rec):
        for i in range(300):
            send(b"x", ports[0])
            if i % 50 == 0:
                await asyncio.sleep(0.01)
        await rec.wait(300, timeout=3)
        lines = [r for r in caplog.records if "sequence:door" in r.getMessage()]
        done = svc.stats()["sequence_ok"]
        assert done >= 200 and len(lines) <= 5
        assert svc.stats()["log_dropped"] >= done - 5
        svc.rlog.summary(svc.engine.counters, svc.engine.state_sizes())
        assert "log lines dropped" in caplog.records[-1].getMessage()
