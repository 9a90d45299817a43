"""pigpiod's socket protocol in front of a :class:`Simulator`, so the real ``pigpio`` module and
Debian's ``pigs`` work against it unchanged (research/pigpio-timing.md §2).

Requests are 16 bytes ``<IIII`` (cmd, p1, p2, p3 = extension length, < 65536, else the socket is
closed as pigpiod does); each answer is one 16-byte write ``<IIIi`` (cmd, p1, p2, res), since
pigpio.py reads it with a single ``recv(16)``. After ``NOIB`` a socket carries 12-byte reports.
One thread per connection (as pigpiod); the simulator's lock serialises commands.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import struct
import threading
from pathlib import Path
from typing import IO

from pi_appliance.sim.core import CMD_NC, CMD_NOIB, Clock, RealClock, Simulator, VirtualClock
from pi_appliance.sim.record import VcdWriter, WavWriter

log = logging.getLogger("pi_appliance.sim")

_REQ = struct.Struct("<IIII")
_RES = struct.Struct("<IIIi")
MAX_EXT = 65536
MAX_QUEUED_REPORTS = 100_000


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class SimServer:
    """A TCP listener on ``host:port`` (0 = pick a free one) serving one Simulator.

    ``realtime`` runs waves in real time (a ticker thread moves the DMA every ``tick_s``); otherwise
    the clock is virtual and moves ``poll_step_us`` on each ``wave_tx_at``/``wave_tx_busy`` poll.
    ``record_vcd``/``record_wav``/``record_jsonl`` stream what the pins do to files (``gpios`` picks
    which; the WAV takes the first). The JSONL trace has one header line
    ``{"tick0_wall_ns": …, "gpios": […]}`` then ``{"t": tick_us, "wall_ns": …, "gpio": g, "level": l}``
    per edge and ``{"wave": wid, "sent": …, "start": …, "end": …}`` per wave the DMA finished.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        realtime: bool = True,
        poll_step_us: int = 10_000,
        gpios: list[int] | None = None,
        record_vcd: str = "",
        record_wav: str = "",
        record_jsonl: str = "",
        jsonl_max_edges: int = 2_000_000,
        keep_edges: int | None = None,
        permitted: int | None = None,
        tick_s: float = 0.01,
    ) -> None:
        clock: Clock = RealClock() if realtime else VirtualClock(poll_step_us)
        kw = {} if permitted is None else {"permitted": permitted}
        self.sim = Simulator(clock, keep_edges=keep_edges, **kw)
        self.realtime = realtime
        self.gpios = gpios if gpios is not None else list(range(28))
        self._tick_s = tick_s
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.settimeout(0.1)  # accept() wakes up to notice stop()
        self.host, self.port = self._listener.getsockname()[:2]
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._vcd = VcdWriter(record_vcd, self.gpios, tick0_wall_ns=clock.wall0_ns) if record_vcd else None
        self._wav = WavWriter(record_wav) if record_wav else None
        self._jsonl: IO[str] | None = None
        self._jsonl_left = jsonl_max_edges
        if record_jsonl:
            Path(record_jsonl).parent.mkdir(parents=True, exist_ok=True)
            self._jsonl = open(record_jsonl, "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
            self._jsonl.write(json.dumps({"tick0_wall_ns": clock.wall0_ns, "gpios": self.gpios}) + "\n")
            self.sim.segment_sinks.append(self._jsonl_segment)
        if self._vcd or self._wav or self._jsonl:
            self.sim.sinks.append(self._sink)

    # recording
    def _sink(self, t: int, gpio: int, level: int) -> None:
        if self._vcd:
            self._vcd.edge(t, gpio, level)
        if self._wav and gpio == self.gpios[0]:
            self._wav.edge(t, level)
        if self._jsonl and gpio in self.gpios and self._jsonl_left > 0:
            self._jsonl_left -= 1
            wall = self.sim.wall_ns_of_tick(t)
            self._jsonl.write(f'{{"t": {t}, "wall_ns": {wall}, "gpio": {gpio}, "level": {level}}}\n')
            if self._jsonl_left == 0:
                log.warning("simulator: edge trace full, no more edges written")

    def _jsonl_segment(self, wid: int, sent: int, start: int, end: int) -> None:
        if self._jsonl:
            self._jsonl.write(f'{{"wave": {wid}, "sent": {sent}, "start": {start}, "end": {end}}}\n')

    # lifecycle
    def start(self) -> SimServer:
        t = threading.Thread(target=self._accept_loop, name="sim-accept", daemon=True)
        t.start()
        self._threads.append(t)
        if self.realtime:
            t = threading.Thread(target=self._ticker, name="sim-ticker", daemon=True)
            t.start()
            self._threads.append(t)
        log.info("simulator: pigpiod protocol on %s:%d (%s clock)", self.host, self.port,
                 "real-time" if self.realtime else "virtual")  # fmt: skip
        return self

    def stop(self) -> None:
        """Close every connection, stop the clock, flush the recordings."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for c in list(self._conns):
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                c.close()
        for t in self._threads:
            t.join(timeout=2)
        with self.sim.lock:
            self.sim.advance()
            end = self.sim.now()
            if self._vcd:
                self._vcd.close(end)
            if self._wav:
                self._wav.close(end)
            if self._jsonl:
                self._jsonl.close()
                self._jsonl = None

    def __enter__(self) -> SimServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ticker(self) -> None:
        while not self._stop.wait(self._tick_s):
            self.sim.advance()
            if self._jsonl:
                with self.sim.lock:
                    self._jsonl.flush()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._conns.add(conn)
            t = threading.Thread(target=self._serve, args=(conn,), name="sim-conn", daemon=True)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                head = _recv_exact(conn, 16)
                if head is None:
                    return
                cmd, p1, p2, p3 = _REQ.unpack(head)
                if p3 >= MAX_EXT:
                    log.warning("simulator: extension of %d bytes; closing the socket as pigpiod does", p3)
                    return
                ext = _recv_exact(conn, p3) if p3 else b""
                if ext is None:
                    return
                if cmd == CMD_NOIB:
                    self._notify_stream(conn, p1, p2)
                    return
                res = self.sim.command(cmd, p1, p2, ext)
                conn.sendall(_RES.pack(cmd, p1, p2, res))
        except OSError:
            return
        finally:
            self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _notify_stream(self, conn: socket.socket, p1: int, p2: int) -> None:
        reports: queue.SimpleQueue[bytes] = queue.SimpleQueue()

        def put(report: bytes) -> None:
            if reports.qsize() < MAX_QUEUED_REPORTS:  # a client that never reads loses reports, as on pigpiod
                reports.put(report)

        handle = self.sim.open_notifier(put)
        conn.sendall(_RES.pack(CMD_NOIB, p1, p2, handle))
        if handle < 0:
            return
        conn.settimeout(0.02)
        try:
            while not self._stop.is_set():
                out = bytearray()
                while not reports.empty():
                    out += reports.get()
                if out:
                    conn.sendall(out)
                try:
                    head = conn.recv(16)
                except TimeoutError:
                    continue
                if not head:
                    return
                if len(head) == 16 and _REQ.unpack(head)[0] == CMD_NC:
                    return
        finally:
            self.sim.close_notifier(handle)
