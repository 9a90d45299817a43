"""Robustness at the socket level, against the real daemon: 100 concurrent clients and the
connection limit, slow and half-open connections, the idle-exempt timeout, a client that never
reads, and fuzzed lines and random bytes over real sockets; the daemon keeps answering, never
logs a traceback, and its memory stays bounded."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from pathlib import Path

import pytest
from mpd_daemon import Daemon, start_daemon
from test_mpd_fuzz import fuzz_line

pytestmark = pytest.mark.slow

CONFIG = """
[mpd]
max_connections = 100
connection_timeout = 1.0
max_output_buffer_size = 65536
"""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = start_daemon(tmp_path_factory.mktemp("robust"), CONFIG)
    yield d
    assert d.stop() == 0
    log = d.log.read_text()
    assert "Traceback" not in log, log


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def open_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    assert await r.readline() == b"OK MPD 0.23.5\n"
    return r, w


async def reply(r: asyncio.StreamReader) -> list[bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(r.readline(), 10)
        if not line:
            raise EOFError
        lines.append(line)
        if line == b"OK\n" or line.startswith(b"ACK "):
            return lines


def ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.recv(64)
        s.sendall(b"ping\n")
        return s.recv(64) == b"OK\n"


def test_hundred_concurrent_clients_and_the_limit(daemon: Daemon) -> None:
    async def main() -> None:
        clients = [await open_client(daemon.port) for _ in range(100)]

        async def work(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> int:
            n = 0
            for _ in range(10):
                w.write(b"status\nping\ncommand_list_ok_begin\nstatus\ncurrentsong\ncommand_list_end\n")
                assert (await reply(r))[-1] == b"OK\n"
                assert await reply(r) == [b"OK\n"]
                assert (await reply(r))[-1] == b"OK\n"
                n += 3
            return n

        done = await asyncio.gather(*(work(r, w) for r, w in clients))
        assert sum(done) == 3000
        # the 101st: accepted and closed at once, no greeting (MPD's "Max connections reached")
        r, w = await asyncio.open_connection("127.0.0.1", daemon.port)
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()
        for _, w in clients:
            w.close()
        await asyncio.sleep(0.3)
        # room again
        r, w = await open_client(daemon.port)
        w.write(b"ping\n")
        assert await reply(r) == [b"OK\n"]
        w.close()

    asyncio.run(main())


def test_slow_client_byte_by_byte(daemon: Daemon) -> None:
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.recv(64)
        for b in b"command_list_ok_begin\nping\nstatus\ncommand_list_end\n":
            s.send(bytes([b]))
            time.sleep(0.002)
        data = b""
        while not data.endswith(b"list_OK\nOK\n"):
            data += s.recv(4096)
        assert data.startswith(b"list_OK\nvolume: ")


def test_half_open_and_silent_connections_time_out_but_idle_does_not(daemon: Daemon) -> None:
    silent = socket.create_connection(("127.0.0.1", daemon.port), timeout=6)
    partial = socket.create_connection(("127.0.0.1", daemon.port), timeout=6)
    idler = socket.create_connection(("127.0.0.1", daemon.port), timeout=6)
    for s in (silent, partial, idler):
        assert s.recv(64) == b"OK MPD 0.23.5\n"
    partial.sendall(b"stat")  # half a line, never finished
    idler.sendall(b"idle\n")
    t0 = time.monotonic()
    assert silent.recv(64) == b""  # closed by the server (connection_timeout = 1 s)
    assert partial.recv(64) == b""
    assert time.monotonic() - t0 < 5
    time.sleep(1.5)
    idler.sendall(b"noidle\n")  # idle connections are exempt
    assert idler.recv(64) == b"OK\n"
    # a half-closed client (shut its write side) still gets its answers, then the server closes
    half = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    half.recv(64)
    half.sendall(b"ping\nping\n")
    half.shutdown(socket.SHUT_WR)
    data = b""
    while chunk := half.recv(64):
        data += chunk
    assert data == b"OK\nOK\n"
    for s in (silent, partial, idler, half):
        s.close()
    assert ping(daemon.port)


def test_client_that_never_reads_is_cut_off(daemon: Daemon) -> None:
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.recv(64)
    before = rss(daemon.proc.pid)
    closed = False
    try:
        for _ in range(4000):
            s.sendall(b"playlistinfo\nlistallinfo\n")
    except OSError:
        closed = True  # the server gave up on us: its output buffer would have passed the limit
    if not closed:
        time.sleep(1.5)
        s.settimeout(0.5)
        try:
            while s.recv(1 << 20):
                pass
            closed = True
        except OSError:
            closed = True
    s.close()
    assert closed
    assert rss(daemon.proc.pid) - before < 32 * 1024 * 1024
    assert ping(daemon.port)


def test_fuzz_over_sockets(daemon: Daemon) -> None:
    """10^4 fuzzed lines sent over 40 connections (a line that breaks the protocol closes its
    connection and drops the rest, as in MPD) and 200 random byte streams. The in-memory fuzz
    (test_mpd_fuzz.py) pushes 10^5 lines through sessions."""
    rng = random.Random(11)
    pool = [fuzz_line(rng) + b"\n" for _ in range(5000)]
    base = rss(daemon.proc.pid)

    async def one(i: int) -> None:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", daemon.port)
        except OSError:
            return
        try:
            for _ in range(25):
                w.write(b"".join(rng.choices(pool, k=10)))
                await w.drain()
                await asyncio.sleep(0)
            w.write_eof()
            while await asyncio.wait_for(r.read(65536), 10):
                pass
        except (TimeoutError, OSError):
            pass
        finally:
            w.close()

    async def noise(i: int) -> None:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", daemon.port)
            w.write(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 3000))))
            w.write_eof()
            while await asyncio.wait_for(r.read(65536), 10):
                pass
            w.close()
        except (TimeoutError, OSError):
            pass

    async def main() -> None:
        for _ in range(4):
            await asyncio.gather(*(one(i) for i in range(10)))
            await asyncio.gather(*(noise(i) for i in range(50)))

    asyncio.run(main())
    assert daemon.proc.poll() is None
    assert ping(daemon.port)
    assert rss(daemon.proc.pid) - base < 32 * 1024 * 1024
