"""The asyncio server: TCP on every bound address and an optional Unix socket, one
:class:`Session` per connection, MPD's connection limit and idle-exempt timeout.

Usage (what the daemon does)::

    async with MpdServer(app, settings) as server:
        ...  # server.ports: the TCP ports actually bound (port 0 picks one)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from pi_appliance.config import MpdSettings
from pi_appliance.errors import ApplianceError
from pi_appliance.mpd.app import App
from pi_appliance.mpd.session import GREETING, Session

log = logging.getLogger(__name__)


class MpdServer:
    """Listens, enforces ``max_connections`` (refused clients get EOF, no greeting) and
    ``connection_timeout`` (a connection that is not idling and sends no line for that long is
    closed; idle ones never time out)."""

    def __init__(
        self, app: App, settings: MpdSettings | None = None, *, sockets: Sequence[socket.socket] = ()
    ) -> None:
        self.app = app
        self.settings = settings or app.settings
        self.inherited = list(sockets)  # bound by systemd (socket activation): used instead of bind/port
        self._servers: list[asyncio.base_events.Server] = []
        self._sweeper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # sessions awaiting a command
        self.ports: list[int] = []

    async def start(self) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        if self.inherited:
            await self._serve_inherited(loop)
            return
        try:
            for host in s.bind:
                server = await loop.create_server(
                    self._protocol(local=False), host, s.port, reuse_address=True, backlog=128
                )
                self._servers.append(server)
                for sock in server.sockets:
                    self.ports.append(sock.getsockname()[1])
            if s.socket:
                path = Path(s.socket)
                with contextlib.suppress(FileNotFoundError):
                    if path.is_socket():
                        path.unlink()
                server = await loop.create_unix_server(self._protocol(local=True), str(path), backlog=128)
                os.chmod(path, 0o666)
                self._servers.append(server)
        except OSError as e:
            await self.close()
            raise ApplianceError(f"MPD server: cannot listen: {e}") from e
        self._sweeper = asyncio.create_task(self._sweep(), name="mpd-timeouts")
        log.info("MPD protocol on %s port %s%s", ", ".join(s.bind), self.ports, f", {s.socket}" if s.socket else "")

    async def _serve_inherited(self, loop: asyncio.AbstractEventLoop) -> None:
        """Socket activation: serve on the listening sockets systemd passed, TCP or Unix."""
        where = []
        for sock in self.inherited:
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(self._protocol(local=True), sock=sock, backlog=128)
                where.append(str(sock.getsockname()))
            else:
                server = await loop.create_server(self._protocol(local=False), sock=sock, backlog=128)
                self.ports.append(sock.getsockname()[1])
                host, port = sock.getsockname()[:2]
                where.append(f"{host} port {port}")
            self._servers.append(server)
        self._sweeper = asyncio.create_task(self._sweep(), name="mpd-timeouts")
        log.info("MPD protocol on the sockets systemd passed: %s ([mpd] bind and port unused)", ", ".join(where))

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for server in self._servers:
            server.close()
        for session in list(self.app.sessions):
            session.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)
        self._servers.clear()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
        if self.settings.socket and not self.inherited:
            with contextlib.suppress(OSError):
                Path(self.settings.socket).unlink()

    async def __aenter__(self) -> MpdServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _protocol(self, *, local: bool) -> Callable[[], _Connection]:
        return lambda: _Connection(self, local=local)

    async def _sweep(self) -> None:
        timeout = self.settings.connection_timeout
        period = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self.app.sessions):
                if not session.closed and not session.idle_waiting and now - session.last_activity > timeout:
                    log.info("[%s] connection timed out", session.peer)
                    session.close()


class _Connection(asyncio.Protocol):
    """One client on the transport directly: each received chunk is handled within the callback
    that delivers it, and a reply is one write, no task switch between them. A command that has
    to wait (``play``...) gets a task; reading pauses until it is done, so order is kept."""

    def __init__(self, server: MpdServer, *, local: bool) -> None:
        self.server = server
        self.local = local
        self.session: Session | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport subclasses
        server = self.server
        if self.local:
            peer = "unix"
        else:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            addr = transport.get_extra_info("peername")
            peer = f"{addr[0]}:{addr[1]}" if addr else "?"
        if len(server.app.sessions) >= server.settings.max_connections:
            log.warning("Max connections reached (%d), refusing %s", server.settings.max_connections, peer)
            transport.close()
            return
        self.session = Session(server.app, transport, local=self.local, peer=peer)
        server.app.sessions.add(self.session)
        transport.write(GREETING)

    def data_received(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        try:
            pending = session.feed(data)
        except Exception as e:
            self._failed(session, e)
            return
        if pending is not None:
            assert self.transport is not None
            self.transport.pause_reading()
            task = asyncio.get_running_loop().create_task(self._wait(session, pending))
            self.server._tasks.add(task)
            task.add_done_callback(self.server._tasks.discard)

    async def _wait(self, session: Session, pending: Coroutine[Any, Any, bool] | None) -> None:
        try:
            while pending is not None:
                pending = session.resume(await pending)
        except Exception as e:
            self._failed(session, e)
            return
        if not session.closed and self.transport is not None:
            self.transport.resume_reading()

    def _failed(self, session: Session, e: Exception) -> None:
        if not isinstance(e, (ConnectionError, OSError)):  # a bug in one connection never takes the server down
            log.exception("[%s] session failed", session.peer, exc_info=e)
        session.close()

    def eof_received(self) -> bool:
        if self.session is not None:
            self.session.close()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        session = self.session
        if session is not None:
            self.server.app.sessions.discard(session)
            session.close()
