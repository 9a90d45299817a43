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
from collections.abc import Sequence
from pathlib import Path

from pi_appliance.config import MpdSettings
from pi_appliance.errors import ApplianceError
from pi_appliance.mpd.app import App
from pi_appliance.mpd.session import Session

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
        self._tasks: set[asyncio.Task[None]] = set()
        self.ports: list[int] = []

    async def start(self) -> None:
        s = self.settings
        if self.inherited:
            await self._serve_inherited()
            return
        try:
            for host in s.bind:
                server = await asyncio.start_server(
                    self._tcp_client, host, s.port, reuse_address=True, limit=65536, backlog=128
                )
                self._servers.append(server)
                for sock in server.sockets:
                    self.ports.append(sock.getsockname()[1])
            if s.socket:
                path = Path(s.socket)
                with contextlib.suppress(FileNotFoundError):
                    if path.is_socket():
                        path.unlink()
                server = await asyncio.start_unix_server(self._unix_client, str(path), backlog=128)
                os.chmod(path, 0o666)
                self._servers.append(server)
        except OSError as e:
            await self.close()
            raise ApplianceError(f"MPD server: cannot listen: {e}") from e
        self._sweeper = asyncio.create_task(self._sweep(), name="mpd-timeouts")
        log.info("MPD protocol on %s port %s%s", ", ".join(s.bind), self.ports, f", {s.socket}" if s.socket else "")

    async def _serve_inherited(self) -> None:
        """Socket activation: serve on the listening sockets systemd passed, TCP or Unix."""
        where = []
        for sock in self.inherited:
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX:
                server = await asyncio.start_unix_server(self._unix_client, sock=sock, backlog=128)
                where.append(str(sock.getsockname()))
            else:
                server = await asyncio.start_server(self._tcp_client, sock=sock, limit=65536, backlog=128)
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

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = writer.get_extra_info("peername")
        await self._client(reader, writer, local=False, peer=f"{peer[0]}:{peer[1]}" if peer else "?")

    async def _unix_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._client(reader, writer, local=True, peer="unix")

    async def _client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, local: bool, peer: str
    ) -> None:
        if len(self.app.sessions) >= self.settings.max_connections:
            log.warning("Max connections reached (%d), refusing %s", self.settings.max_connections, peer)
            writer.close()
            return
        session = Session(self.app, writer, local=local, peer=peer)
        self.app.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await session.run(reader)
        except (ConnectionError, OSError):
            pass
        except Exception:  # a bug in one connection never takes the server down
            log.exception("[%s] session failed", peer)
        finally:
            self.app.sessions.discard(session)
            session.close()
            if task is not None:
                self._tasks.discard(task)

    async def _sweep(self) -> None:
        timeout = self.settings.connection_timeout
        period = min(1.0, timeout / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for session in list(self.app.sessions):
                if not session.idle_waiting and now - session.last_activity > timeout:
                    log.info("[%s] connection timed out", session.peer)
                    session.close()
