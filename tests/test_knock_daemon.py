"""The original idea end to end through the daemon: ``pi-appliance --output sim`` with the tick pool
on; Debian's ``knock`` client plays a melody of tone and silence ticks, then play; the simulator's
recorded edges are that melody, and ``mpc status`` shows the pool as the song playing."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from conftest import free_port, need_program
from test_knock_helpers import pick_ports
from test_knock_sim import FREQ, MELODY, check_melody, sim_edges


class Daemon:
    """``python -m pi_appliance.daemon`` with its log read by a thread (so the pipe never fills)."""

    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pi_appliance.daemon", "--config", str(cfg), "--no-mdns"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def wait_log(self, fragment: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(fragment in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {fragment!r} in the daemon's log: {''.join(self.lines)[-2000:]}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


def test_daemon_plays_the_knock_melody_in_the_simulator(tmp_path: Path) -> None:
    knock = need_program("knock")
    mpc = need_program("mpc")
    mpd_port = free_port()
    pool = pick_ports(1, lo=30000, hi=32000)[0]
    state = tmp_path / "state"
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        f"""
state_dir = "{state}"
[mpd]
bind = ["127.0.0.1"]
port = {mpd_port}
[output]
kind = "sim"
[discovery]
enabled = false
[knock]
enabled = true
auth_port = 0
bind = ["127.0.0.1"]
guard = 4
[knock.pool]
enabled = true
sources = ["127.0.0.0/8"]
tone_port = {pool}
silence_port = {pool + 1}
play_port = {pool + 2}
clear_port = {pool + 3}
tick_ms = 100
freq_hz = {FREQ}
"""
    )
    daemon = Daemon(cfg)
    try:
        daemon.wait_log("knock listener (socket)")
        ports = [str(pool if t == "T" else pool + 1) for t in MELODY] + [str(pool + 2)]
        subprocess.run([knock, "-u", "127.0.0.1", *ports], check=True, timeout=10)
        time.sleep(0.3)
        status = subprocess.run(
            [mpc, "-h", "127.0.0.1", "-p", str(mpd_port), "status"], capture_output=True, text=True, timeout=10
        ).stdout
        assert "knock pool (127.0.0.1)" in status and "[playing]" in status, status
        time.sleep(1.2)  # the tune is 0.9 s
        status = subprocess.run(
            [mpc, "-h", "127.0.0.1", "-p", str(mpd_port), "status"], capture_output=True, text=True, timeout=10
        ).stdout
        assert "[playing]" not in status, status
    finally:
        code = daemon.stop()
    assert code == 0, "".join(daemon.lines)[-3000:]
    check_melody(sim_edges(state / "sim-edges.jsonl"))
