"""The notify protocol on the wire (a datagram socket standing where systemd's would be), the
watchdog fed from the event loop, the debug stall, and socket activation through systemd's own
`systemd-socket-activate`. The same code under a real systemd: tests/test_systemd_boot.py."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import free_port, need_program

from pi_appliance import sdnotify


class Receiver:
    """A bound AF_UNIX datagram socket, as systemd's notify socket is."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"pi-appliance-test-{os.getpid()}-{time.monotonic_ns()}"
            self.sock.bind("\0" + name)
            self.env_value = "@" + name
        else:
            self.sock.bind(str(path))
            self.env_value = str(path)
        self.sock.settimeout(5)

    def get(self, timeout: float = 5.0) -> str:
        self.sock.settimeout(timeout)
        return self.sock.recv(4096).decode()

    def drain(self) -> list[str]:
        out = []
        self.sock.setblocking(False)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return out

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("kind", ["abstract", "path"])
def test_ready_status_watchdog_stopping_on_the_wire(tmp_path, kind):
    rx = Receiver(None if kind == "abstract" else tmp_path / "notify")
    env = {"NOTIFY_SOCKET": rx.env_value, "WATCHDOG_USEC": "4000000"}
    n = sdnotify.Notifier.from_environ(env)
    assert env == {}, "the variables must be unset so children never ping for us"
    assert n.enabled and n.watchdog_interval == 2.0
    assert n.ready("serving MPD on port 6600\nsecond line")
    assert rx.get() == "READY=1\nSTATUS=serving MPD on port 6600 second line"
    assert n.watchdog()
    assert rx.get() == "WATCHDOG=1"
    assert n.stopping()
    assert rx.get() == "STOPPING=1"
    n.close()
    rx.close()


def test_outside_systemd_everything_is_a_no_op():
    n = sdnotify.Notifier.from_environ({})
    assert not n.enabled and n.watchdog_interval is None
    assert n.ready() is False and n.watchdog() is False


def test_watchdog_for_another_pid_is_ignored():
    n = sdnotify.Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval is None


def test_a_vanished_socket_is_reported_not_raised(tmp_path):
    n = sdnotify.Notifier(str(tmp_path / "gone"))
    assert n.ready() is False


async def test_lifecycle_pings_every_half_timeout_and_says_stopping():
    rx = Receiver()
    env = {"NOTIFY_SOCKET": rx.env_value, "WATCHDOG_USEC": "200000"}  # 0.2 s: a ping every 0.1 s
    async with sdnotify.lifecycle(status="serving", environ=env):
        await asyncio.sleep(0.55)
    messages = rx.drain()
    rx.close()
    assert messages[0] == "READY=1\nSTATUS=serving", messages  # the feeder first runs at the next await
    assert set(messages[1:-1]) == {"WATCHDOG=1"}
    assert 2 <= len(messages) - 2 <= 10, messages  # about 0.55 / 0.1 pings; a loaded machine may lag
    assert messages[-1] == "STOPPING=1\nSTATUS=stopping"


STALL_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys
    from pi_appliance import sdnotify

    async def main():
        async with sdnotify.lifecycle(status="serving"):
            print("up", flush=True)
            await asyncio.sleep(30)

    asyncio.run(main())
    """
)


def start_stall_program(rx: Receiver, stall: bool) -> subprocess.Popen[str]:
    env = dict(os.environ, NOTIFY_SOCKET=rx.env_value, WATCHDOG_USEC="200000")
    env.pop(sdnotify.DEBUG_STALL_ENV, None)
    if stall:
        env[sdnotify.DEBUG_STALL_ENV] = "1"
    proc = subprocess.Popen([sys.executable, "-c", STALL_PROGRAM], env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def test_debug_stall_blocks_the_loop_so_the_pings_stop():
    rx = Receiver()
    proc = start_stall_program(rx, stall=True)
    try:
        assert rx.get() == "READY=1\nSTATUS=serving"
        assert rx.get() == "WATCHDOG=1"
        proc.send_signal(signal.SIGUSR2)
        # Pings come every 0.1 s while the loop runs: wait for a quiet half second (a loaded machine
        # may take a moment to deliver the signal), then it must stay quiet.
        deadline = time.monotonic() + 10
        while True:
            rx.drain()
            time.sleep(0.5)
            if not rx.drain():
                break
            assert time.monotonic() < deadline, "the loop kept pinging after SIGUSR2"
        time.sleep(1.0)
        assert rx.drain() == [], "the loop pinged again after the stall"
        assert proc.poll() is None, "the stalled process should hang, not exit"
    finally:
        proc.kill()
        proc.wait()
        rx.close()


def test_without_the_debug_variable_sigusr2_installs_no_stall():
    rx = Receiver()
    proc = start_stall_program(rx, stall=False)
    try:
        proc.send_signal(signal.SIGUSR2)
        assert proc.wait(timeout=5) == -signal.SIGUSR2  # the default action: no hidden hang in production
    finally:
        if proc.poll() is None:
            proc.kill()
        rx.close()


ACTIVATED_PROGRAM = textwrap.dedent(
    """
    import os, socket
    from pi_appliance import sdnotify

    fds = sdnotify.listen_fds()
    print("fds", fds, "env-left", [k for k in os.environ if k.startswith("LISTEN_")], flush=True)
    (name, fd), = fds
    srv = socket.socket(fileno=fd)
    conn, _ = srv.accept()
    conn.sendall(b"hello from " + name.encode() + b"\\n")
    conn.close()
    """
)


def test_socket_activation_with_systemd_socket_activate():
    tool = need_program("systemd-socket-activate")
    port = free_port()
    proc = subprocess.Popen(
        [tool, "-l", f"127.0.0.1:{port}", "--fdname=mpd", sys.executable, "-c", ACTIVATED_PROGRAM],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
                time.sleep(0.05)
        with conn:
            conn.settimeout(10)
            assert conn.recv(100) == b"hello from mpd\n"
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "fds [('mpd', 3)] env-left []" in out, out + err


def test_no_listen_fds_without_listen_pid():
    assert sdnotify.listen_fds({"LISTEN_FDS": "2"}) == []
    assert sdnotify.listen_fds({"LISTEN_FDS": "2", "LISTEN_PID": "1"}) == []


def test_the_daemon_serves_mpd_on_the_socket_systemd_passes(tmp_path):
    """pi-appliance.socket's way: the daemon takes the bound socket (sd_listen_fds) and serves MPD
    on it, never binding its configured port; the first client's connection waits in the backlog."""
    tool = need_program("systemd-socket-activate")
    mpc = need_program("mpc")
    port, configured = free_port(), free_port()
    log = tmp_path / "daemon.log"
    cmd = [tool, "-l", f"127.0.0.1:{port}", "--fdname=mpd", sys.executable, "-m", "pi_appliance.daemon",
           "--output", "sim", "--no-mdns", "--state-dir", str(tmp_path / "state"),
           "--bind", "127.0.0.1", "--port", str(configured)]  # fmt: skip
    with log.open("wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:  # systemd-socket-activate listening: the daemon is not started yet
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "systemd-socket-activate did not listen"
                time.sleep(0.05)
        out = subprocess.run([mpc, "-p", str(port), "playlist"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr + log.read_text()
        assert "Twinkle" in out.stdout, out.stdout  # a first start's queue: the built-in tunes
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", configured), timeout=5)
        assert "sockets systemd passed: 127.0.0.1 port" in log.read_text()
    finally:
        proc.terminate()
        proc.wait(20)
