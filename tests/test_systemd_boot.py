"""The daemon under a real systemd: the root the role converged (tests/test_ansible_converge.py) booted
with systemd-nspawn (its own network namespace, only loopback). The unit reaches `active` through
READY=1, answers `pictl status`, stops cleanly on SIGTERM, and is restarted by the watchdog when its
event loop is stuck (PI_APPLIANCE_DEBUG_STALL=1 plus SIGUSR2, set by a test-only drop-in)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT

# Longer than pyproject's 300 s: the first test may build, converge and boot the root.
pytestmark = pytest.mark.timeout(1500)

UNIT = "pi-appliance.service"
DROPIN = "/etc/systemd/system/pi-appliance.service.d/90-watchdog-test.conf"


def wait_active(machine, timeout: float = 60.0) -> dict[str, str]:
    props = ("ActiveState", "SubState", "Result", "MainPID", "NRestarts", "StatusText", "Type")
    state: dict[str, str] = {}

    def active() -> bool:
        state.update(machine.unit(UNIT, *props))
        if state.get("ActiveState") == "failed":
            pytest.fail(f"{UNIT} failed: {state}\n{machine.journal(UNIT)[-4000:]}")
        return state.get("ActiveState") == "active" and state.get("SubState") == "running"

    try:
        machine.wait_until(f"{UNIT} active", active, timeout)
    except TimeoutError:
        pytest.fail(f"{UNIT} did not become active: {state}\n{machine.journal(UNIT)[-4000:]}")
    return state


def test_the_unit_becomes_active_through_ready(booted_appliance):
    m = booted_appliance
    state = wait_active(m)
    # Type=notify: "active (running)" is reached only on READY=1; the STATUS= line is the daemon's own.
    assert state["Type"] == "notify"
    assert state["StatusText"].startswith("serving MPD on port 6600"), state
    assert state["NRestarts"] == "0", m.journal(UNIT)
    # The daemon runs as its own unprivileged user, with its state directory made by systemd.
    status = m.run("cat", f"/proc/{state['MainPID']}/status").stdout
    uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
    assert m.run("getent", "passwd", uid).stdout.startswith("pi-appliance:")
    owner = m.run("stat", "-c", "%U %a", "/var/lib/pi-appliance").stdout.split()
    assert owner[0] == "pi-appliance", owner
    assert "event loop: uvloop" in m.journal(UNIT)  # the role installed the 'fast' extra


def test_pictl_status_and_play_inside_the_root(booted_appliance):
    m = booted_appliance
    wait_active(m)
    if importlib.util.find_spec("pi_appliance.cli.pictl") is not None:
        proc = m.run("/opt/pi-appliance/venv/bin/pictl", "--host", "127.0.0.1", "--port", "6600", "status", check=False)
        print(f"pictl status inside the booted root:\n{proc.stdout}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "volume:" in proc.stdout, proc.stdout  # mpc's status layout
        # And the README's last step: it plays (on the simulator: this root is no Pi).
        play = m.run(
            "/opt/pi-appliance/venv/bin/pictl", "--host", "127.0.0.1", "--port", "6600", "play", "1", check=False
        )
        print(f"pictl play 1:\n{play.stdout}")
        assert play.returncode == 0 and "[playing]" in play.stdout, play.stdout + play.stderr
    else:  # pictl is not on this branch yet: ask with python-mpd2 from the same venv, as pictl would
        program = (
            "import mpd; c = mpd.MPDClient(); c.connect('127.0.0.1', 6600); "
            "print(c.mpd_version); print(c.status()); c.play(0); print(c.status()['state']); c.disconnect()"
        )
        proc = m.run("/opt/pi-appliance/venv/bin/python", "-c", program, check=False)
        print(f"python-mpd2 status inside the booted root (no pictl yet):\n{proc.stdout}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "'state': 'stop'" in proc.stdout, proc.stdout
        assert proc.stdout.splitlines()[-1] == "play", proc.stdout  # and it plays (on the simulator)


def test_sigterm_stops_cleanly(booted_appliance):
    m = booted_appliance
    wait_active(m)
    m.run("systemctl", "stop", UNIT)
    state = m.unit(UNIT, "ActiveState", "Result", "ExecMainStatus", "ExecMainCode")
    assert state["ActiveState"] == "inactive" and state["Result"] == "success", state
    journal = m.journal(UNIT)
    assert "Deactivated successfully" in journal or "Stopped" in journal
    m.run("systemctl", "start", UNIT)
    wait_active(m)


def test_the_watchdog_restarts_a_stuck_loop(booted_appliance):
    m = booted_appliance
    m.run("sh", "-c", f"printf '[Service]\\nEnvironment=PI_APPLIANCE_DEBUG_STALL=1\\nWatchdogSec=2\\n' > {DROPIN}")
    try:
        m.run("systemctl", "daemon-reload")
        m.run("systemctl", "restart", UNIT)
        before = wait_active(m)
        assert before["NRestarts"] == "0"
        m.run("systemctl", "kill", "--kill-whom=main", "--signal=SIGUSR2", UNIT)
        state: dict[str, str] = {}

        def restarted() -> bool:
            state.update(m.unit(UNIT, "NRestarts", "ActiveState", "SubState", "MainPID"))
            return state["NRestarts"] == "1" and state["ActiveState"] == "active" and state["SubState"] == "running"

        m.wait_until("a watchdog restart", restarted, timeout=30)
        assert state["MainPID"] != before["MainPID"]
        journal = m.journal(UNIT)
        assert "Watchdog timeout" in journal, journal[-3000:]
        assert "Failed with result 'watchdog'" in journal, journal[-3000:]
    finally:
        m.run("rm", "-f", DROPIN)
        m.run("systemctl", "daemon-reload")
        m.run("systemctl", "restart", UNIT, check=False)


def test_an_update_rolls_in_and_the_daemon_comes_back(booted_appliance, converged_root, deploy_wheelhouse, tmp_path):
    """ "Again later, to update them": a newer wheel beside the old one, the playbook again (asked for
    the version), the daemon restarted on the new code. Two versions without a choice are refused."""
    import deploy_rootfs

    m = booted_appliance
    root, *_ = converged_root
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".git", ".venv", "dist", "build", "*.egg-info", "__pycache__", "demo-out"),
    )
    pyproject = src / "pyproject.toml"
    pyproject.write_text(re.sub(r'(?m)^version = "([^"]+)"$', r'version = "\1+update"', pyproject.read_text(), count=1))
    new_version = re.search(r'(?m)^version = "([^"]+)"$', pyproject.read_text()).group(1)
    wheelhouse = tmp_path / "wheelhouse"
    shutil.copytree(deploy_wheelhouse, wheelhouse)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheelhouse), str(src)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    inv = deploy_rootfs.chroot_inventory(
        tmp_path / "inventory.yml", root, wheelhouse, pi_appliance_ntp_servers=["192.0.2.123"]
    )

    ambiguous = deploy_rootfs.run_playbook(inv, "pi-chroot")
    assert ambiguous.rc != 0 and "holds several versions" in ambiguous.output, ambiguous.output[-3000:]

    update = deploy_rootfs.run_playbook(inv, "pi-chroot", "-e", f"pi_appliance_version={new_version}")
    print(f"update run: {update.describe()}")
    assert update.rc == 0, update.output[-4000:]
    pip_task = update.output.split("Install pi-appliance into its virtual environment")[1].split("TASK [")[0]
    assert "changed: [pi-chroot]" in pip_task, pip_task
    m.run("systemctl", "restart", UNIT)
    wait_active(m)
    probe = "import importlib.metadata as md; print(md.version('pi-appliance'))"
    running = m.run("/opt/pi-appliance/venv/bin/python", "-c", probe).stdout.strip()
    assert running == new_version


def test_socket_activation_keeps_the_port_and_starts_the_daemon(
    booted_appliance, converged_root, deploy_wheelhouse, tmp_path
):
    """The role with pi_appliance_socket_activation: pi-appliance.socket holds port 6600 and hands it
    to the service; with the service stopped, a client's connection starts it and is served."""
    import deploy_rootfs

    m = booted_appliance
    root, *_ = converged_root
    inv = deploy_rootfs.chroot_inventory(
        tmp_path / "inventory.yml",
        root,
        deploy_wheelhouse,
        pi_appliance_ntp_servers=["192.0.2.123"],
        pi_appliance_socket_activation=True,
    )
    run = deploy_rootfs.run_playbook(inv, "pi-chroot")
    print(f"socket activation run: {run.describe()}")
    assert run.rc == 0, run.output[-4000:]
    assert (root / "etc/systemd/system/sockets.target.wants/pi-appliance.socket").is_symlink()
    pictl = ("/opt/pi-appliance/venv/bin/pictl", "--host", "127.0.0.1", "--port", "6600")
    try:
        # what the role's handlers do on a running system: stop, bind the socket, start
        m.run("systemctl", "daemon-reload")
        m.run("systemctl", "stop", UNIT)
        m.run("systemctl", "start", "pi-appliance.socket")
        m.run("systemctl", "start", UNIT)
        wait_active(m)
        assert "sockets systemd passed" in m.journal(UNIT)
        assert m.run(*pictl, "status", check=False).returncode == 0
        # the service stopped, the port stays open: a client's connection starts the daemon
        m.run("systemctl", "stop", UNIT)
        assert m.unit("pi-appliance.socket", "ActiveState")["ActiveState"] == "active"
        proc = m.run(*pictl, "status", check=False, timeout=90)
        assert proc.returncode == 0 and "volume:" in proc.stdout, proc.stdout + proc.stderr
        wait_active(m)
    finally:
        m.run("systemctl", "disable", "--now", "pi-appliance.socket", check=False)
        m.run("systemctl", "restart", UNIT, check=False)
