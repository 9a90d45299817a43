"""Two ways to see knocks. Neither ever sends a byte back.

- :class:`SocketListener` (default, unprivileged): one UDP socket per watched port and address.
  Ports under 1024 need ``CAP_NET_BIND_SERVICE``. A bound UDP socket answers nothing, not even
  ICMP port-unreachable, so to a scanner it looks like a filtered port. TCP is not offered here:
  a listening TCP socket would answer the SYN.
- :class:`PacketListener` (``CAP_NET_RAW``): one ``AF_PACKET``/``SOCK_DGRAM`` socket with a classic
  BPF program in the kernel (:func:`pi_appliance.knock.packet.build_filter`), so only knocks to the
  watched ports reach user space. The knock ports stay closed: the kernel answers RST or ICMP as
  for any closed port, like knockd. Sees TCP SYNs and UDP, IPv4 and IPv6, in arrival order.

Both read in batches from the event loop's reader callback, and hand each packet to ``on_hit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import logging
import select
import socket
import struct
from collections.abc import Callable, Iterable

from pi_appliance.knock.auth import LENGTH as AUTH_LENGTH
from pi_appliance.knock.auth import KnockError
from pi_appliance.knock.packet import Hit, build_filter, pack_filter, parse_l3

log = logging.getLogger("pi_appliance.knock")

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
BATCH = 256  # packets read per wake-up before yielding to the loop
SO_TIMESTAMPNS = 35  # Linux; SCM_TIMESTAMPNS has the same value
MAX_ROUNDS = 16
_ANC_SIZE = socket.CMSG_SPACE(16)
RCVBUF = 1 << 20

OnHit = Callable[[Hit], None]


class SocketListener:
    """Bound UDP sockets on the watched ports; the set of ports can change (clock sequences).

    One socket per port loses the arrival order when the loop reads them one after the other
    (a burst of tone ticks would be read before the silence tick between them). So every socket
    sits in one epoll set, the loop watches only that, and each wake-up reads every ready socket
    until a last poll finds none, then hands the packets on sorted by the kernel's receive
    timestamp (``SO_TIMESTAMPNS``).
    """

    def __init__(self, addresses: Iterable[str], on_hit: OnHit, *, auth_port: int = 0) -> None:
        self.addresses = list(addresses)
        self.on_hit = on_hit
        self.auth_port = auth_port
        self._socks: dict[tuple[str, int], socket.socket] = {}
        self._by_fd: dict[int, tuple[socket.socket, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._epoll: select.epoll | None = None
        self.skipped: set[tuple[str, int]] = set()

    def set_ports(self, doors: set[int], extra: set[int], *, strict: bool = True) -> None:
        """Watch ``doors`` and ``extra`` (tripwires, skipped if taken).

        ``strict`` (at start): a door port that cannot be bound stops everything with a KnockError.
        Later (clock sequences move every window) such a port is logged and skipped instead.
        """
        if self._epoll is None:
            self._loop = asyncio.get_running_loop()
            self._epoll = select.epoll()
            self._loop.add_reader(self._epoll.fileno(), self._readable)
        want = {(a, p) for a in self.addresses for p in doors | extra}
        for key in list(self._socks):
            if key not in want:
                self._close(key)
        for addr, port in sorted(want - set(self._socks) - self.skipped):
            try:
                self._open(addr, port)
            except OSError as e:
                if port in doors and not strict:
                    log.warning("knock port %s on %s cannot be watched now: %s", port, addr, e.strerror)
                    continue
                if port in doors:
                    self.close()
                    if e.errno in (errno.EACCES, errno.EPERM):
                        raise KnockError(
                            f"knock port {port} on {addr}: permission denied (ports under 1024 need "
                            "CAP_NET_BIND_SERVICE, e.g. AmbientCapabilities= in the unit)"
                        ) from None
                    raise KnockError(f"knock port {port} on {addr}: {e.strerror}") from None
                self.skipped.add((addr, port))
                log.debug("tripwire port %s on %s not watched: %s", port, addr, e.strerror)

    def _open(self, addr: str, port: int) -> None:
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            if fam == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if port == self.auth_port:
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            s.bind((addr, port))
        except BaseException:
            s.close()
            raise
        self._socks[(addr, port)] = s
        self._by_fd[s.fileno()] = (s, port)
        assert self._epoll is not None
        self._epoll.register(s.fileno(), select.EPOLLIN)

    def _close(self, key: tuple[str, int]) -> None:
        s = self._socks.pop(key)
        self._by_fd.pop(s.fileno(), None)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(s.fileno())
        s.close()

    def _readable(self) -> None:
        assert self._epoll is not None
        got: list[tuple[int, int, Hit]] = []
        n = 0
        for _round in range(MAX_ROUNDS):  # bounded even if a socket keeps saying ready and gives nothing
            if n >= BATCH:
                break
            ready = self._epoll.poll(0)
            if not ready:
                break
            for fd, _ in ready:
                entry = self._by_fd.get(fd)
                if entry is None:
                    continue
                s, port = entry
                size = AUTH_LENGTH + 1 if port == self.auth_port else 1
                while n < BATCH:
                    try:
                        data, anc, _, addr = s.recvmsg(size, _ANC_SIZE)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    ts = 0
                    for level, kind, value in anc:
                        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                            sec, nsec = struct.unpack_from("qq", value)
                            ts = sec * 1_000_000_000 + nsec
                    got.append((ts, n, Hit(addr[0], "udp", port, addr[1], data)))
                    n += 1
        got.sort(key=lambda item: (item[0], item[1]))
        for _, _, hit in got:
            self.on_hit(hit)

    @property
    def ports(self) -> set[int]:
        return {p for _, p in self._socks}

    def close(self) -> None:
        for key in list(self._socks):
            self._close(key)
        if self._epoll is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None


class PacketListener:
    """AF_PACKET with a kernel BPF filter; needs CAP_NET_RAW."""

    def __init__(self, interfaces: Iterable[str], on_hit: OnHit) -> None:
        self.interfaces = list(interfaces)
        self.on_hit = on_hit
        self._socks: list[socket.socket] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._prog: bytes = b""

    def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        names = self.interfaces or [""]
        for name in names:
            try:
                s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
            except PermissionError:
                self.close()
                raise KnockError("listener = 'packet' needs CAP_NET_RAW (AmbientCapabilities=CAP_NET_RAW)") from None
            self._socks.append(s)
            s.setblocking(False)
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
            # Drop everything until the real filter is in, so nothing unfiltered is ever queued.
            self._attach(s, [(0x06, 0, 0, 0)])
            if name:  # unbound, a packet socket hears every interface
                try:
                    s.bind((name, 0))  # protocol 0: the socket's own (ETH_P_ALL)
                except OSError as e:
                    self.close()
                    raise KnockError(f"knock interface {name!r}: {e.strerror}") from None
            self._drain(s)

    def set_filter(self, udp: Iterable[tuple[int, int]], tcp: Iterable[tuple[int, int]], auth_port: int) -> None:
        prog = build_filter(udp, tcp, auth_port)
        for s in self._socks:
            self._attach(s, prog)
            if self._loop is not None:
                self._loop.remove_reader(s.fileno())
                self._loop.add_reader(s.fileno(), self._readable, s)

    @staticmethod
    def _attach(s: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
        raw = pack_filter(prog)
        buf = ctypes.create_string_buffer(raw, len(raw))
        fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
        s.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies buf here

    @staticmethod
    def _drain(s: socket.socket) -> None:
        for _ in range(100_000):
            try:
                s.recv(1)
            except OSError:
                return

    def _readable(self, s: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                data, addr = s.recvfrom(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            hit = parse_l3(data, addr[1])
            if hit is not None:
                self.on_hit(hit)

    def close(self) -> None:
        for s in self._socks:
            if self._loop is not None:
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(s.fileno())
            s.close()
        self._socks.clear()
