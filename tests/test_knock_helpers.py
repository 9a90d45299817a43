"""Helpers for the knock tests (no tests here): settings, a recording KnockActions, spoofed packets.

Spoofed packets go out through an IP_HDRINCL raw socket (root) with a 127.0.0.0/8 source and a
destination pinned to 127.0.0.1: nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
import struct
import time
from typing import Any

from pi_appliance.config import KnockSettings, build_section
from pi_appliance.knock.engine import Engine
from pi_appliance.knock.packet import Hit
from pi_appliance.music.model import Tune

KEY = bytes(range(32))


def settings(**table: Any) -> KnockSettings:
    """KnockSettings from a TOML-like table, through the real config loader (so checks run)."""
    base: dict[str, Any] = {"enabled": True, "auth_port": 0}
    base.update(table)
    return build_section(KnockSettings, base, "test.toml", "knock")


def engine(keys: dict[str, bytes] | None = None, clock_keys: dict[str, bytes] | None = None, **table: Any) -> Engine:
    if keys and "key" not in table:
        table["key"] = [{"id": k, "file": "unused"} for k in keys]
    e = Engine(settings(**table), keys or {}, clock_keys)
    e.tick(0)
    return e


def udp(src: str, port: int, sport: int = 40000, payload: bytes = b"x") -> Hit:
    return Hit(src, "udp", port, sport, payload)


class Recorder:
    """A KnockActions that writes down what it was asked (with a monotonic ns stamp)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.event = asyncio.Event()

    def _rec(self, *call: Any) -> None:
        self.calls.append((*call, time.monotonic_ns()))
        self.event.set()

    async def play(self, tune: int) -> None:
        self._rec("play", tune)

    async def stop(self) -> None:
        self._rec("stop")

    async def next(self) -> None:
        self._rec("next")

    async def volume(self, volume: int) -> None:
        self._rec("volume", volume)

    async def play_tune(self, tune: Tune, title: str) -> None:
        self._rec("tune", tune, title)

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]

    async def wait(self, n: int, timeout: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.calls) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return len(self.calls) >= n


def pick_ports(n: int, gap: int = 40, lo: int = 20000, hi: int = 30000) -> list[int]:
    """``n`` ports ``gap`` apart (below the ephemeral range, so free_port() users never collide),
    whose neighbourhoods are free for UDP on 127.0.0.1."""
    for _ in range(200):
        base = random.randrange(lo, hi - n * gap)
        ports = [base + i * gap for i in range(n)]
        ok = True
        for p in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return ports
    raise RuntimeError("no free ports")


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return (~s) & 0xFFFF


def ipv4(src: str, proto: int, l4: bytes, *, frag: int = 0, ident: int | None = None) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        random.getrandbits(16) if ident is None else ident,
        frag,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton("127.0.0.1"),
    )
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4


def udp_packet(src: str, dport: int, sport: int = 40000, payload: bytes = b"x") -> bytes:
    return ipv4(src, socket.IPPROTO_UDP, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def tcp_packet(src: str, dport: int, sport: int = 40000, flags: int = 0x02, seq: int | None = None) -> bytes:
    seq = random.getrandbits(32) if seq is None else seq
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton("127.0.0.1") + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    return ipv4(src, socket.IPPROTO_TCP, tcp)


class RawSender:
    """IP_HDRINCL raw socket; refuses any destination but 127.0.0.1."""

    def __init__(self) -> None:
        self.s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        self.s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)

    def send(self, pkt: bytes) -> None:
        assert pkt[16:20] == b"\x7f\x00\x00\x01", "loopback only"
        while True:
            try:
                self.s.sendto(pkt, ("127.0.0.1", 0))
                return
            except OSError as e:
                if e.errno not in (errno.ENOBUFS, errno.EAGAIN):
                    raise
                time.sleep(0.0005)

    def close(self) -> None:
        self.s.close()

    def __enter__(self) -> RawSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def spoofed_sources(n: int, second_octet: int = 16) -> list[str]:
    """``n`` distinct addresses in 127.<second_octet..>.x.y."""
    out = []
    for i in range(n):
        a, b = divmod(i, 254)
        out.append(f"127.{second_octet + a // 256}.{a % 256}.{b + 1}")
    return out
