"""systemd's service protocols, spoken directly: notify (sd_notify(3)) and socket activation
(sd_listen_fds(3)). A few lines each, so no dependency (``sdnotify`` on PyPI is sdist-only and
will not install offline on a Pi with Python 3.13).

- ``READY=1`` once every socket is bound (``Type=notify``: the unit is "active" from then on);
- ``WATCHDOG=1`` every ``WATCHDOG_USEC``/2, sent by a task *on the event loop*, so a loop that is
  stuck stops the pings and systemd restarts the daemon (``WatchdogSec=``, ``Restart=on-failure``);
- ``STOPPING=1`` when shutting down; ``STATUS=`` lines for ``systemctl status``.

Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op returning False.

Debugging the watchdog: with ``PI_APPLIANCE_DEBUG_STALL=1`` in the daemon's environment, SIGUSR2
blocks the event loop for good (a deliberate hang, as a deadlock would), so the watchdog fires.
Never set it in production; nothing else reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Mapping, MutableMapping

log = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3
DEBUG_STALL_ENV = "PI_APPLIANCE_DEBUG_STALL"
DEBUG_STALL_SIGNAL = signal.SIGUSR2


def _socket_address(value: str) -> str | bytes | None:
    """NOTIFY_SOCKET as an address for sendto: a path, or ``@name`` for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:... and other forms: not on a Pi


def _for_this_process(environ: Mapping[str, str], pid_key: str) -> bool:
    pid = environ.get(pid_key)
    if pid is None:
        return True
    try:
        return int(pid) == os.getpid()
    except ValueError:
        return False


class Notifier:
    """Sends state changes to the service manager over ``NOTIFY_SOCKET``."""

    def __init__(self, address: str | bytes | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        self.watchdog_usec = watchdog_usec
        self._sock: socket.socket | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """Read ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``/``WATCHDOG_PID``.

        With ``unset`` they are removed from the environment, as sd_notify(3) recommends, so that a
        child process never pings on our behalf.
        """
        env = os.environ if environ is None else environ
        address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        usec: int | None = None
        if _for_this_process(env, "WATCHDOG_PID"):
            try:
                usec = int(env.get("WATCHDOG_USEC", "")) or None
            except ValueError:
                usec = None
        if unset:
            for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(key, None)
        return cls(address, usec)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half the watchdog timeout, or None without a watchdog."""
        return self.watchdog_usec / 2e6 if self.watchdog_usec else None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when not under systemd or it failed."""
        if self.address is None:
            return False
        message = "\n".join(assignments).encode()
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message, self.address)
        except OSError as e:
            log.warning("sd_notify %s: %s", assignments[0] if assignments else "", e)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([_status(status)] if status else []))

    def status(self, text: str) -> bool:
        return self.send(_status(text))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        return self.send("STOPPING=1", *([_status(status)] if status else []))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    return "STATUS=" + " ".join(text.split())  # one line: a newline would start a new assignment


async def feed_watchdog(notifier: Notifier, interval: float) -> None:
    """Ping every ``interval`` seconds from the event loop, until cancelled."""
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)


def _stall_forever() -> None:
    log.warning("%s: SIGUSR2 received, blocking the event loop on purpose", DEBUG_STALL_ENV)
    while True:
        time.sleep(3600)


@contextlib.asynccontextmanager
async def lifecycle(
    status: str = "serving", notifier: Notifier | None = None, environ: MutableMapping[str, str] | None = None
) -> AsyncIterator[Notifier]:
    """Enter when every socket is bound: READY=1 and watchdog pings; on exit STOPPING=1.

    Meant for the daemon's AsyncExitStack, entered after the servers, so it is left first.
    """
    env = os.environ if environ is None else environ
    n = notifier if notifier is not None else Notifier.from_environ(env)
    loop = asyncio.get_running_loop()
    stall = env.get(DEBUG_STALL_ENV) == "1"
    if stall:
        log.warning("%s=1: SIGUSR2 will hang the event loop (watchdog test only)", DEBUG_STALL_ENV)
        loop.add_signal_handler(DEBUG_STALL_SIGNAL, _stall_forever)
    feeder: asyncio.Task[None] | None = None
    interval = n.watchdog_interval
    if interval is not None:
        feeder = asyncio.create_task(feed_watchdog(n, interval), name="sd-watchdog")
    n.ready(status)
    try:
        yield n
    finally:
        n.stopping("stopping")
        if feeder is not None:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
        if stall:
            loop.remove_signal_handler(DEBUG_STALL_SIGNAL)
        n.close()


def listen_fds(environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> list[tuple[str, int]]:
    """Socket activation: the fds systemd passed us, as ``(name, fd)`` (sd_listen_fds_with_names(3)).

    Empty unless ``LISTEN_PID`` is this process. Names come from ``FileDescriptorName=`` (systemd
    says ``unknown`` when unnamed). The fds are marked close-on-exec.
    """
    env = os.environ if environ is None else environ
    mine = "LISTEN_PID" in env and _for_this_process(env, "LISTEN_PID")
    try:
        count = int(env.get("LISTEN_FDS", "0")) if mine else 0
    except ValueError:
        count = 0
    names_env = env.get("LISTEN_FDNAMES")
    names = names_env.split(":") if names_env else []
    if unset:
        for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(key, None)
    result = []
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        result.append((names[i] if i < len(names) else "unknown", fd))
    return result


def listen_sockets(environ: MutableMapping[str, str] | None = None) -> list[socket.socket]:
    """The passed fds as socket objects (family and type are read from the fds)."""
    return [socket.socket(fileno=fd) for _, fd in listen_fds(environ)]
