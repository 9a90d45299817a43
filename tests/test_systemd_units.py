"""The shipped unit, checked by systemd itself: `systemd-analyze verify` says nothing, and
`systemd-analyze security --offline` scores it 2.0 or better, with and without the drop-ins the role
writes for pigpio, gpiozero, privileged ports and raw knock capture."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
from conftest import ROOT, need_program

UNIT = ROOT / "systemd" / "pi-appliance.service"
SOCKET = ROOT / "systemd" / "pi-appliance.socket"
ROLE = ROOT / "ansible" / "roles" / "pi_appliance"
DAEMON = Path(sys.executable).parent / "pi-appliance"  # the entry point installed with the test venv


def verify(unit: Path, *more: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze verify` with the ExecStart path present: a private tmpfs on /opt (mount
    namespace) holds the real daemon's entry point, so the host's /opt is never touched."""
    need_program("systemd-analyze")
    need_program("unshare")
    if not DAEMON.exists():
        pytest.fail(f"{DAEMON} is missing: install pi-appliance into the test venv (tools/setup-venv.sh)")
    daemon = DAEMON
    script = (
        "set -e; mount -t tmpfs none /opt; mkdir -p /opt/pi-appliance/venv/bin; "
        f"ln -s {daemon} /opt/pi-appliance/venv/bin/pi-appliance; "
        f"exec systemd-analyze verify --man=no {' '.join(map(str, (unit, *more)))}"
    )
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=60)


def security(unit_dir: Path, root: Path | None = None) -> tuple[float, str]:
    need_program("systemd-analyze")
    args = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    if root is not None:
        args += [f"--root={root}", "pi-appliance.service"]
    else:
        args += [str(unit_dir / "pi-appliance.service")]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for pi-appliance\.service: (\d+\.\d+) (\w+)", proc.stdout)
    assert m, f"no score in:\n{proc.stdout}\n{proc.stderr}"
    return float(m.group(1)), m.group(2)


def test_verify_prints_nothing():
    proc = verify(UNIT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", f"systemd-analyze verify complained:\n{proc.stderr}"


def test_verify_would_catch_a_typo(tmp_path):
    # verify exits 0 on unknown keys: only the stderr check catches them, so show that it does.
    bad = tmp_path / "pi-appliance.service"
    bad.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict"))
    proc = verify(bad)
    assert "Unknown key" in proc.stderr and "ProtectSytem" in proc.stderr


def test_security_score_as_shipped():
    score, word = security(UNIT.parent)
    print(f"systemd-analyze security --offline=true systemd/pi-appliance.service: {score} {word}")
    assert score <= 2.0, f"exposure {score} {word}: the unit lost hardening"


def test_security_gate_can_fail(tmp_path):
    bare = tmp_path / "pi-appliance.service"
    bare.write_text("[Service]\nType=notify\nExecStart=/opt/pi-appliance/venv/bin/pi-appliance\n")
    score, _ = security(tmp_path)
    assert score > 2.0


def test_unit_is_type_notify_with_watchdog_and_restart():
    text = UNIT.read_text()
    for line in ("Type=notify", "Restart=on-failure", "User=pi-appliance", "StateDirectory=pi-appliance"):
        assert re.search(rf"^{re.escape(line)}$", text, re.MULTILINE), line
    assert re.search(r"^WatchdogSec=\d+$", text, re.MULTILINE)
    assert re.search(r"^After=.*\bpigpiod\.service\b", text, re.MULTILINE)
    assert re.search(r"^After=.*\bnetwork-online\.target\b", text, re.MULTILINE)


def test_role_installs_the_shipped_unit_unchanged():
    assert (ROLE / "files" / "pi-appliance.service").read_bytes() == UNIT.read_bytes()


def render_dropin(backend: str, port: int = 6600, raw: bool = False, privileged: bool = False) -> str:
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.globals.update(ansible_managed="")
    tpl = env.from_string((ROLE / "templates" / "pi-appliance.conf.j2").read_text())
    return tpl.render(
        inventory_hostname="pi-test",
        pi_appliance__backend=backend,
        pi_appliance_mpd_port=port,
        pi_appliance_knock_raw_capture=raw,
        pi_appliance_bind_privileged_ports=privileged,
    )


@pytest.mark.parametrize(
    ("label", "kwargs", "expect"),
    [
        ("sim", {"backend": "sim"}, []),
        ("pigpio", {"backend": "pigpio"}, ["Wants=pigpiod.service"]),
        (
            "gpiozero",
            {"backend": "gpiozero"},
            ["DeviceAllow=char-gpiochip rw", "SupplementaryGroups=gpio", "LG_WD=/run/pi-appliance"],
        ),
        ("port 600", {"backend": "sim", "port": 600}, ["AmbientCapabilities=CAP_NET_BIND_SERVICE"]),
        ("raw knocks", {"backend": "sim", "raw": True}, ["AmbientCapabilities=CAP_NET_RAW", "AF_PACKET"]),
    ],
)
def test_role_dropins_verify_and_score(tmp_path, label, kwargs, expect):
    text = render_dropin(**kwargs)
    for e in expect:
        assert e in text, (label, text)
    if not expect:
        assert re.sub(r"#.*|\[\w+\]", "", text).strip() == "", text
    etc = tmp_path / "etc" / "systemd" / "system"
    (etc / "pi-appliance.service.d").mkdir(parents=True)
    (etc / "pi-appliance.service").write_bytes(UNIT.read_bytes())
    (etc / "pi-appliance.service.d" / "50-pi-appliance.conf").write_text(text)
    score, word = security(etc, root=tmp_path)
    print(f"unit + drop-in for {label}: {score} {word}")
    assert score <= 2.0, (label, score)
    # The drop-in parses cleanly too: verify the unit with it beside it.
    proc = verify(etc / "pi-appliance.service")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def render_socket(binds: list[str], port: int) -> str:
    env = jinja2.Environment(trim_blocks=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    tpl = env.from_string((ROLE / "templates" / "pi-appliance.socket.j2").read_text())
    return tpl.render(pi_appliance_mpd_bind=binds, pi_appliance_mpd_port=port)


def test_socket_units_verify(tmp_path):
    """The shipped socket unit and the role's, for IPv4 and IPv6 addresses, beside the service."""
    proc = verify(SOCKET, UNIT)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = render_socket(["0.0.0.0", "::1"], 660)
    assert "ListenStream=0.0.0.0:660\n" in text and "ListenStream=[::1]:660\n" in text, text
    (tmp_path / "pi-appliance.socket").write_text(text)
    (tmp_path / "pi-appliance.service").write_bytes(UNIT.read_bytes())
    proc = verify(tmp_path / "pi-appliance.socket", tmp_path / "pi-appliance.service")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    # the shipped one and the role's differ only in their comments and ListenStream lines
    def settings(text: str) -> list[str]:
        return [x for x in text.splitlines() if x and not x.startswith(("#", "ListenStream="))]

    assert settings(SOCKET.read_text()) == settings(text)
