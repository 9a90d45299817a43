"""Authenticated single-packet knocks and clock-derived sequences. Pure except :func:`load_key`.

The datagram (81 bytes, big-endian)::

    0   4  b"PAK" + version (1)
    4  16  key id, UTF-8, NUL-padded
   20   8  timestamp, ms since the epoch (the sender's wall clock)
   28  16  nonce (random)
   44   1  action: 1 play, 2 stop, 3 next, 4 volume
   45   4  argument (tune number 1-based, or volume 0..100)
   49  32  HMAC-SHA256 over bytes 0..48 under the client's key

The receiver looks at nothing but the length before an HMAC matches: it computes the MAC under each
configured key (a handful) and compares with :func:`hmac.compare_digest`. Only then are the fields
read: the key id must name the key that matched, the timestamp must be within ± the window, the
MAC must not be in the replay cache (which outlives restarts), and the action must make sense.
The action never depends on the sender's address, so the same datagram from elsewhere is either
a replay (refused) or the first copy (the same action).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from pi_appliance.errors import ApplianceError

MAGIC = b"PAK"
VERSION = 1
BODY = struct.Struct("!3sB16sQ16sBI")
MAC_LEN = 32
LENGTH = BODY.size + MAC_LEN  # 81
ACTIONS = {1: "play", 2: "stop", 3: "next", 4: "volume"}
ACTION_CODES = {v: k for k, v in ACTIONS.items()}
KEY_BYTES = 32


class KnockError(ApplianceError):
    """A knock configuration or key problem (the listener refuses to start)."""


@dataclass(frozen=True, slots=True)
class AuthKnock:
    key_id: str
    ts_ms: int
    nonce: bytes
    action: str
    arg: int
    mac: bytes


def encode(key: bytes, key_id: str, action: str, arg: int, ts_ms: int, nonce: bytes) -> bytes:
    """The datagram a client sends (``pictl knock``)."""
    kid = key_id.encode()
    if not 1 <= len(kid) <= 16:
        raise ValueError("key id must be 1..16 bytes")
    if len(nonce) != 16:
        raise ValueError("nonce must be 16 bytes")
    if action not in ACTION_CODES:
        raise ValueError(f"action must be one of {', '.join(ACTION_CODES)}")
    body = BODY.pack(MAGIC, VERSION, kid.ljust(16, b"\0"), ts_ms, nonce, ACTION_CODES[action], arg)
    return body + hmac.digest(key, body, "sha256")


def verify_mac(data: bytes, keys: dict[str, bytes]) -> str | None:
    """The id of the key whose HMAC matches ``data``, else None. Reads nothing but the length."""
    if len(data) != LENGTH:
        return None
    body, mac = data[: BODY.size], data[BODY.size :]
    found = None
    for key_id, key in keys.items():
        # Every key is tried (no early exit), so the time taken says nothing about which matched.
        if hmac.compare_digest(hmac.digest(key, body, "sha256"), mac):
            found = key_id
    return found


def decode(data: bytes, key_id: str) -> AuthKnock | str:
    """Fields of an HMAC-verified datagram, or the reason it is still refused."""
    magic, version, kid, ts_ms, nonce, code, arg = BODY.unpack_from(data)
    if magic != MAGIC or version != VERSION:
        return "version"
    if kid.rstrip(b"\0") != key_id.encode():
        return "key-id"
    action = ACTIONS.get(code)
    if action is None:
        return "action"
    if action == "play" and not 1 <= arg <= 100_000:
        return "argument"
    if action == "volume" and not 0 <= arg <= 100:
        return "argument"
    return AuthKnock(key_id, ts_ms, nonce, action, arg, data[BODY.size :])


class ReplayCache:
    """MACs of accepted knocks, kept while their timestamp could still pass the window.

    Bounded: when full of live entries it refuses new knocks (fails closed) rather than forget one.
    """

    def __init__(self, window_ms: int, max_entries: int = 65536) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # mac -> ts_ms, oldest insert first

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, mac: bytes) -> bool:
        return mac in self._seen

    def prune(self, now_ms: int) -> None:
        horizon = now_ms - self.window_ms
        stale = [m for m, ts in self._seen.items() if ts < horizon]
        for m in stale:
            del self._seen[m]

    def add(self, mac: bytes, ts_ms: int, now_ms: int) -> bool:
        if len(self._seen) >= self.max_entries:
            self.prune(now_ms)
            if len(self._seen) >= self.max_entries:
                return False
        self._seen[mac] = ts_ms
        return True

    def items(self) -> list[tuple[bytes, int]]:
        return list(self._seen.items())


def derive_ports(secret: bytes, name: str, window: int, length: int, lo: int, hi: int, min_gap: int) -> tuple[int, ...]:
    """The ports of clock-derived sequence ``name`` in time window ``window`` (HMAC-SHA256, TOTP-like).

    Ports are drawn from ``lo..hi`` and kept at least ``min_gap`` apart, so a scan crosses
    tripwires between any two of them.
    """
    span = hi - lo + 1
    ports: list[int] = []
    counter = 0
    while len(ports) < length:
        digest = hmac.digest(secret, f"{name}\0{window}\0{counter}".encode(), "sha256")
        for i in range(0, len(digest), 4):
            port = lo + int.from_bytes(digest[i : i + 4], "big") % span
            if all(abs(port - p) >= min_gap for p in ports):
                ports.append(port)
                if len(ports) == length:
                    break
        counter += 1
        if counter > 1000:
            raise ValueError("cannot place the ports (range too small for the length)")
    return tuple(ports)


def load_key(path: str | Path) -> bytes:
    """A key file's secret (hex). Refuses a missing file, a non-regular file, or one others can read."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise KnockError(f"{p}: key file missing") from None
    except OSError as e:
        raise KnockError(f"{p}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise KnockError(f"{p}: not a regular file")
        if st.st_mode & 0o077:
            raise KnockError(
                f"{p}: key file is readable or writable by group or others (mode {stat.S_IMODE(st.st_mode):04o});"
                f" chmod 600 it"
            )
        raw = os.read(fd, 4096)
    finally:
        os.close(fd)
    try:
        key = bytes.fromhex(raw.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise KnockError(f"{p}: not a hex key (make one with: pictl knock keygen FILE)") from None
    if len(key) < 16:
        raise KnockError(f"{p}: key too short ({len(key)} bytes; at least 16)")
    return key


def key_fingerprint(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]
