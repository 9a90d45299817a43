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
