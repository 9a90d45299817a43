"""Shared fixtures. Tests talk to real parts; these only locate them."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
CORPUS = SHARED / "corpus" / "rtttl"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need_program(name: str) -> str:
    """Path of a Debian program the test talks to; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: tools/test.sh installs it (tools/apt-packages.txt)")
    return path


@pytest.fixture
def corpus_dir() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the RTTTL corpus is not at {CORPUS}: ../shared must sit beside the repository")
    return CORPUS


@pytest.fixture
def lo_netns() -> Iterator[str]:
    """A network namespace of our own with only ``lo`` up (root): mDNS there reaches nobody else's tests.

    Run things in it with ``ip netns exec NAME ...``; it is deleted afterwards (with whatever still runs
    in it losing its network).
    """
    import os
    import subprocess
    import uuid

    if os.geteuid() != 0:
        pytest.fail("this test needs root to create a network namespace")
    need_program("ip")
    name = f"pa{os.getpid()}{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


# --- deploy (issue 6): one debootstrap'd root per session, converged by the role, then booted ---------
# The pristine root is cached under /var/cache/pi-appliance-tests (tests/deploy_rootfs.py); the slow
# tests share one copy: converged twice by ansible/site.yml, then booted with systemd-nspawn.


@pytest.fixture(scope="session")
def deploy_wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import deploy_rootfs

    out = tmp_path_factory.mktemp("wheelhouse")
    deploy_rootfs.build_wheelhouse(out)
    return out


@pytest.fixture(scope="session")
def converged_root(tmp_path_factory: pytest.TempPathFactory, deploy_wheelhouse: Path):
    """(root, inventory, first run, second run): the role converged into a copy of the cached root."""
    import contextlib
    import os
    import subprocess

    import deploy_rootfs

    if os.geteuid() != 0:
        pytest.fail("the deploy tests need root (debootstrap, chroot, systemd-nspawn); CI runs as root")
    need_program("debootstrap")
    need_program("systemd-nspawn")
    base = tmp_path_factory.mktemp("deploy-root")
    with contextlib.ExitStack() as stack:
        try:
            root = stack.enter_context(deploy_rootfs.scratch_root(base / "scratch"))
        except RuntimeError as e:
            pytest.fail(str(e))
        # Raspberry Pi OS has a gpio group (Debian has not): the role must put its user in it.
        subprocess.run(["chroot", str(root), "groupadd", "--system", "gpio"], check=True, capture_output=True)
        inventory = deploy_rootfs.chroot_inventory(
            base / "inventory.yml",
            root,
            deploy_wheelhouse,
            pi_appliance_ntp_servers=["192.0.2.123"],
            pi_appliance_groups=["bench-a", "row-2"],
        )
        first = deploy_rootfs.run_playbook(inventory, "pi-chroot")
        second = deploy_rootfs.run_playbook(inventory, "pi-chroot") if first.rc == 0 else first
        yield root, inventory, first, second


@pytest.fixture(scope="session")
def booted_appliance(converged_root, tmp_path_factory: pytest.TempPathFactory):
    """The converged root booted with systemd-nspawn (private network); stopped at the end."""
    import deploy_rootfs

    root, _, first, second = converged_root
    if first.rc != 0 or second.rc != 0:
        pytest.fail(f"the role did not converge, nothing to boot:\n{first.output[-3000:]}")
    machine = deploy_rootfs.Machine(root, tmp_path_factory.mktemp("nspawn") / "console.log")
    try:
        machine.start()
    except RuntimeError as e:
        machine.stop()
        pytest.fail(str(e))
    yield machine
    machine.stop()
