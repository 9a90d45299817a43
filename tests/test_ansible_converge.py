"""ansible/site.yml converged into a debootstrap'd Debian Bookworm root over community.general.chroot
(the cached root, copied; see tests/deploy_rootfs.py), then run again: the second run changes nothing.
The booted result is tested in tests/test_systemd_boot.py."""

from __future__ import annotations

import stat
import subprocess

import pytest
from conftest import ROOT

# Longer than pyproject's 300 s: the first test also builds the cached root (debootstrap) and converges twice.
pytestmark = pytest.mark.timeout(1500)


def chroot(root, *cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chroot", str(root), *cmd],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )


def test_first_run_converges(converged_root):
    _, _, first, _ = converged_root
    print(f"first run: {first.describe()}")
    assert first.rc == 0, first.output[-4000:]
    assert first.recap.get("failed") == 0 and first.recap.get("unreachable") == 0
    assert first.recap.get("changed", 0) > 0, "a fresh root must need changes"
    assert "output sim (auto)" in first.output  # a chroot on amd64 is no Pi


def test_second_run_changes_nothing(converged_root):
    _, _, _, second = converged_root
    print(f"second run: {second.describe()}")
    assert second.rc == 0, second.output[-4000:]
    assert second.recap.get("changed") == 0, "not idempotent:\n" + "\n".join(
        line for line in second.output.splitlines() if line.startswith("changed:") or "TASK [" in line
    )


def test_a_dry_run_on_the_converged_root_has_nothing_to_do(converged_root):
    """What an operator runs before a fleet update: --check --diff must report no change."""
    import deploy_rootfs

    _, inventory, first, _ = converged_root
    assert first.rc == 0
    check = deploy_rootfs.run_playbook(inventory, "pi-chroot", "--check", "--diff")
    print(f"--check --diff run: {check.describe()}")
    assert check.rc == 0, check.output[-4000:]
    assert check.recap.get("changed") == 0, check.output[-4000:]


def test_the_app_is_installed_offline_into_a_venv(converged_root):
    root, *_ = converged_root
    venv = root / "opt" / "pi-appliance" / "venv"
    for exe in ("pi-appliance", "pictl", "python"):
        assert (venv / "bin" / exe).exists(), exe
    proc = chroot(root, "/opt/pi-appliance/venv/bin/pi-appliance", "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("pi-appliance "), proc.stdout + proc.stderr
    # Python and packages are the target's own (Bookworm's 3.11), not the controller's.
    assert (venv / "lib" / "python3.11" / "site-packages").is_dir()
    # the wheelhouse has uvloop for this target, so the role installed the 'fast' extra
    proc = chroot(root, "/opt/pi-appliance/venv/bin/python", "-c", "import uvloop; print(uvloop.__version__)")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_config_unit_and_user(converged_root):
    root, *_ = converged_root
    cfg = root / "etc" / "pi-appliance" / "config.toml"
    st = cfg.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    proc = chroot(
        root, "/opt/pi-appliance/venv/bin/pi-appliance", "--check-config", "--config", "/etc/pi-appliance/config.toml"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'kind = "sim"' in cfg.read_text()
    assert 'groups = ["bench-a", "row-2"]' in cfg.read_text()  # pictl --group bench-a finds it (TXT groups)
    unit = root / "etc" / "systemd" / "system" / "pi-appliance.service"
    assert unit.read_bytes() == (ROOT / "systemd" / "pi-appliance.service").read_bytes()
    wants = root / "etc" / "systemd" / "system" / "multi-user.target.wants" / "pi-appliance.service"
    assert wants.is_symlink(), "the unit is not enabled"
    passwd = (root / "etc" / "passwd").read_text()
    (line,) = [x for x in passwd.splitlines() if x.startswith("pi-appliance:")]
    uid, home, shell = int(line.split(":")[2]), line.split(":")[5], line.split(":")[6]
    assert uid < 1000 and home == "/var/lib/pi-appliance" and shell == "/usr/sbin/nologin"
    (gpio,) = [x for x in (root / "etc" / "group").read_text().splitlines() if x.startswith("gpio:")]
    assert "pi-appliance" in gpio.split(":")[3].split(","), gpio
    # chrony is installed and its parser takes the fleet's server from the role's conf.d file.
    proc = chroot(root, "chronyd", "-p")
    assert proc.returncode == 0, proc.stderr
    assert "server 192.0.2.123 iburst" in proc.stdout, proc.stdout


def test_deployed_unit_verifies_and_scores(converged_root):
    root, *_ = converged_root
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", f"--root={root}", "pi-appliance.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--threshold=20", "pi-appliance.service"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    print(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stdout[-2000:]
