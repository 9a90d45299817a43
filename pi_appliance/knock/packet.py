"""What a knock looks like on the wire, and the kernel filter that lets only knocks through. Pure.

:func:`parse_l3` reads an IPv4 or IPv6 packet (as an ``AF_PACKET``/``SOCK_DGRAM`` socket hands it
over, from the network header on) into a :class:`Hit`. It never raises: anything short, odd,
fragmented or carrying IPv6 extension headers is ``None``.

:func:`build_filter` assembles a classic BPF program (``SO_ATTACH_FILTER``) that passes only
packets addressed to this host (``PACKET_HOST``, so loopback's outgoing copies stay out), IPv4
unfragmented or IPv6 without extension headers, UDP or TCP SYN without ACK, to the given port
ranges. Everything else (noise, replies, other ports) is dropped in the kernel and never wakes us.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
TCP_SYN = 0x02
TCP_ACK = 0x10

#: Bytes of each accepted packet copied to user space: headers only, except on the auth port.
SNAP_HEADERS = 96
SNAP_AUTH = 512


@dataclass(frozen=True, slots=True)
class Hit:
    """One knock packet: who sent it, to which port, over what, and (UDP) what it carried."""

    src: str
    proto: str  # "udp" | "tcp"
    dport: int
    sport: int = 0
    payload: bytes = b""


def parse_l3(data: bytes, ethertype: int) -> Hit | None:
    """An IPv4/IPv6 UDP or TCP-SYN packet → Hit; anything else → None. Never raises."""
    try:
        if ethertype == ETH_P_IP:
            return _parse_v4(data)
        if ethertype == ETH_P_IPV6:
            return _parse_v6(data)
    except (struct.error, ValueError, IndexError, OSError):
        return None
    return None


def _parse_v4(data: bytes) -> Hit | None:
    if len(data) < 20 or data[0] >> 4 != 4:
        return None
    ihl = (data[0] & 0x0F) * 4
    total = int.from_bytes(data[2:4], "big")
    if ihl < 20 or total < ihl or int.from_bytes(data[6:8], "big") & 0x3FFF:
        return None  # bad header length, or a fragment
    end = min(total, len(data))  # the snap length may have cut the packet short
    src = socket.inet_ntop(socket.AF_INET, data[12:16])
    return _parse_l4(data, data[9], ihl, end, total, src)


def _parse_v6(data: bytes) -> Hit | None:
    if len(data) < 40 or data[0] >> 4 != 6:
        return None
    total = 40 + int.from_bytes(data[4:6], "big")
    src = socket.inet_ntop(socket.AF_INET6, data[8:24])
    return _parse_l4(data, data[6], 40, min(total, len(data)), total, src)


def _parse_l4(data: bytes, proto: int, off: int, end: int, total: int, src: str) -> Hit | None:
    if proto == socket.IPPROTO_UDP:
        if end < off + 8:
            return None
        sport, dport, ulen = struct.unpack_from("!HHH", data, off)
        if ulen < 8 or off + ulen > total:
            return None
        return Hit(src, "udp", dport, sport, bytes(data[off + 8 : min(off + ulen, end)]))
    if proto == socket.IPPROTO_TCP:
        if end < off + 14:
            return None
        sport, dport = struct.unpack_from("!HH", data, off)
        if data[off + 13] & (TCP_SYN | TCP_ACK) != TCP_SYN:
            return None  # only a connection's first SYN is a knock
        return Hit(src, "tcp", dport, sport)
    return None


def port_ranges(ports: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted ports → merged inclusive ranges."""
    out: list[list[int]] = []
    for p in sorted(set(ports)):
        if out and p == out[-1][1] + 1:
            out[-1][1] = p
        else:
            out.append([p, p])
    return [(a, b) for a, b in out]


# --- classic BPF -------------------------------------------------------------------------------

_LD_W_ABS, _LD_H_ABS, _LD_B_ABS = 0x20, 0x28, 0x30
_LD_H_IND, _LD_B_IND, _LDX_B_MSH = 0x48, 0x50, 0xB1
_ALU_AND_K = 0x54
_JA, _JEQ, _JGT, _JGE, _JSET = 0x05, 0x15, 0x25, 0x35, 0x45
_RET_K = 0x06
_SKF_AD_PROTOCOL = 0xFFFFF000  # SKF_AD_OFF + 0: ntohs(skb->protocol)
_SKF_AD_PKTTYPE = 0xFFFFF004  # SKF_AD_OFF + 4: skb->pkt_type
PACKET_HOST = 0
MAX_INSNS = 4096


class _Asm:
    """A tiny assembler: instructions with symbolic jump targets, resolved at the end."""

    def __init__(self) -> None:
        self.code: list[tuple[int, object, object, int]] = []
        self.labels: dict[str, int] = {}

    def op(self, code: int, k: int = 0, jt: object = 0, jf: object = 0) -> None:
        self.code.append((code, jt, jf, k))

    def label(self, name: str) -> None:
        self.labels[name] = len(self.code)

    def assemble(self) -> list[tuple[int, int, int, int]]:
        out = []
        for i, (code, jt, jf, k) in enumerate(self.code):

            def rel(t: object, i: int = i) -> int:
                if isinstance(t, int):
                    return t
                off = self.labels[str(t)] - i - 1
                if not 0 <= off <= 255:
                    raise ValueError(f"BPF jump to {t} out of range ({off})")
                return off

            if code == _JA and not isinstance(k, int):
                k = self.labels[str(k)] - i - 1
            out.append((code, rel(jt), rel(jf), k))
        if len(out) > MAX_INSNS:
            raise ValueError(f"BPF program too long ({len(out)} > {MAX_INSNS})")
        return out


def build_filter(
    udp: Iterable[tuple[int, int]], tcp: Iterable[tuple[int, int]], auth_port: int = 0
) -> list[tuple[int, int, int, int]]:
    """A classic BPF program (list of (code, jt, jf, k)) passing only knocks to these port ranges."""
    a = _Asm()
    a.op(_LD_W_ABS, _SKF_AD_PKTTYPE)
    a.op(_JEQ, PACKET_HOST, 0, "drop")
    a.op(_LD_H_ABS, _SKF_AD_PROTOCOL)
    a.op(_JEQ, ETH_P_IP, "v4", 0)
    a.op(_JEQ, ETH_P_IPV6, "v6", "drop")
    a.label("v4")
    a.op(_LD_H_ABS, 6)
    a.op(_JSET, 0x3FFF, "drop", 0)  # MF set or a fragment offset: not a knock
    a.op(_LD_B_ABS, 9)
    a.op(_LDX_B_MSH, 0)  # X = IPv4 header length
    a.op(_JEQ, socket.IPPROTO_UDP, 0, "v4tcp")
    a.op(_LD_H_IND, 2)
    a.op(_JA, "udp")
    a.label("v4tcp")
    a.op(_JEQ, socket.IPPROTO_TCP, 0, "drop")
    a.op(_LD_B_IND, 13)
    a.op(_ALU_AND_K, TCP_SYN | TCP_ACK)
    a.op(_JEQ, TCP_SYN, 0, "drop")
    a.op(_LD_H_IND, 2)
    a.op(_JA, "tcp")
    a.label("v6")
    a.op(_LD_B_ABS, 6)  # next header: UDP or TCP only, so extension headers never pass
    a.op(_JEQ, socket.IPPROTO_UDP, 0, "v6tcp")
    a.op(_LD_H_ABS, 42)
    a.op(_JA, "udp")
    a.label("v6tcp")
    a.op(_JEQ, socket.IPPROTO_TCP, 0, "drop")
    a.op(_LD_B_ABS, 53)
    a.op(_ALU_AND_K, TCP_SYN | TCP_ACK)
    a.op(_JEQ, TCP_SYN, 0, "drop")
    a.op(_LD_H_ABS, 42)
    a.op(_JA, "tcp")
    a.label("drop")
    a.op(_RET_K, 0)
    for name, ranges, auth in (("udp", udp, auth_port), ("tcp", tcp, 0)):
        a.label(name)
        if auth:
            a.op(_JEQ, auth, 0, 1)
            a.op(_RET_K, SNAP_AUTH)
        for lo, hi in port_ranges_merge(ranges):
            if lo == hi:
                a.op(_JEQ, lo, 0, 1)
            else:
                a.op(_JGE, lo, 0, 2)
                a.op(_JGT, hi, 1, 0)
            a.op(_RET_K, SNAP_HEADERS)
        a.op(_RET_K, 0)
    return a.assemble()


def port_ranges_merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return [(lo, hi) for lo, hi in out]


def run_filter(prog: list[tuple[int, int, int, int]], pkt: bytes, ethertype: int, pkttype: int = PACKET_HOST) -> int:
    """Interpret ``prog`` over ``pkt`` as the kernel would (the subset we emit): returns the snap length.

    Tests use it to check the program's logic without a socket; the kernel runs the real thing.
    """
    acc = x = 0
    pc = 0
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        if code in (_LD_W_ABS, _LD_H_ABS, _LD_B_ABS):
            if k == _SKF_AD_PKTTYPE:
                acc = pkttype
            elif k == _SKF_AD_PROTOCOL:
                acc = ethertype
            else:
                size = {_LD_W_ABS: 4, _LD_H_ABS: 2, _LD_B_ABS: 1}[code]
                if k + size > len(pkt):
                    return 0
                acc = int.from_bytes(pkt[k : k + size], "big")
        elif code in (_LD_H_IND, _LD_B_IND):
            size = 2 if code == _LD_H_IND else 1
            if x + k + size > len(pkt):
                return 0
            acc = int.from_bytes(pkt[x + k : x + k + size], "big")
        elif code == _LDX_B_MSH:
            if k >= len(pkt):
                return 0
            x = (pkt[k] & 0x0F) * 4
        elif code == _ALU_AND_K:
            acc &= k
        elif code == _JA:
            pc += k
        elif code in (_JEQ, _JGT, _JGE, _JSET):
            cond = {_JEQ: acc == k, _JGT: acc > k, _JGE: acc >= k, _JSET: bool(acc & k)}[code]
            pc += jt if cond else jf
        elif code == _RET_K:
            return k
        else:
            raise ValueError(f"unknown BPF op {code:#x}")


def pack_filter(prog: list[tuple[int, int, int, int]]) -> bytes:
    """The ``struct sock_filter`` array of ``prog``."""
    return b"".join(struct.pack("HBBI", *insn) for insn in prog)
