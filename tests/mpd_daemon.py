"""Start the real daemon (``pi-appliance --output sim``) for loopback tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from mpd_transcripts import free_port, wait_greeting


@dataclass
class Daemon:
    port: int
    proc: subprocess.Popen
    state_dir: Path
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_daemon(workdir: Path, config: str = "", *, port: int | None = None, args: tuple[str, ...] = ()) -> Daemon:
    """The daemon on a free loopback port with its own state directory (``config``: extra TOML)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cfg = workdir / "config.toml"
    cfg.write_text(config)
    log = workdir / "daemon.log"
    cmd = [sys.executable, "-m", "pi_appliance.daemon", "--config", str(cfg), "--output", "sim",
           "--state-dir", str(workdir / "state"), "--port", str(port), "--no-mdns", *args]  # fmt: skip
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        wait_greeting(port, proc=proc)
    except RuntimeError as e:
        proc.kill()
        raise RuntimeError(f"{e}\n{log.read_text()}") from None
    return Daemon(port, proc, workdir / "state", log)
