"""The client side of authenticated knocks (``pictl knock ...`` lands here).

knock HOST ACTION [ARG] --key FILE [--port N] [--key-id ID]
    send one authenticated datagram: ACTION is play N | stop | next | volume N
knock keygen FILE [--force]
    write a new random key (hex, mode 0600) and print the [[knock.key]] stanza for the daemon
knock ports NAME --key FILE [--length 3 --port-min 40000 --port-max 40999 --window 30 --proto udp]
    print the current ports of a clock-derived sequence, for Debian's knock client:
    knock HOST $(pictl knock ports NAME --key FILE)
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
import time
from pathlib import Path

from pi_appliance import atomic
from pi_appliance.knock import auth

DEFAULT_PORT = 62201


def _err(msg: str) -> int:
    print(f"knock: {msg}", file=sys.stderr)
    return 2 if msg.startswith("usage") else 1


def send_knock(host: str, port: int, datagram: bytes) -> str:
    """Send one datagram to ``host``; returns the address it went to. Never waits for an answer."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    fam, typ, proto, _, addr = infos[0]
    with socket.socket(fam, typ, proto) as s:
        s.sendto(datagram, addr)
    return str(addr[0])


def knock_main(argv: list[str]) -> int:
    """``knock HOST ACTION [ARG] --key FILE [--port N] [--key-id ID]``; also ``keygen`` and ``ports``."""
    if argv and argv[0] == "keygen":
        return keygen_main(argv[1:])
    if argv and argv[0] == "ports":
        return ports_main(argv[1:])
    p = argparse.ArgumentParser(prog="pictl knock", description="Send an authenticated knock.")
    p.add_argument("host")
    p.add_argument("action", choices=sorted(auth.ACTION_CODES))
    p.add_argument("arg", nargs="?", type=int)
    p.add_argument("--key", required=True, metavar="FILE", help="the key file (pictl knock keygen FILE)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"the appliance's auth_port (default {DEFAULT_PORT})")
    p.add_argument("--key-id", help="the key's id on the appliance (default: the key file's name)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    if args.action in ("play", "volume") and args.arg is None:
        return _err(f"{args.action} needs a number")
    if args.action == "play" and args.arg < 1:
        return _err("play N: tunes are numbered from 1")
    if args.action == "volume" and not 0 <= args.arg <= 100:
        return _err("volume must be 0..100")
    if args.action in ("stop", "next") and args.arg is not None:
        return _err(f"{args.action} takes no number")
    try:
        key = auth.load_key(args.key)
    except auth.KnockError as e:
        return _err(str(e))
    key_id = args.key_id or Path(args.key).stem
    try:
        datagram = auth.encode(
            key, key_id, args.action, args.arg or 0, time.time_ns() // 1_000_000, secrets.token_bytes(16)
        )
    except ValueError as e:
        return _err(str(e))
    try:
        send_knock(args.host, args.port, datagram)
    except OSError as e:
        return _err(f"{args.host}: {e.strerror or e}")
    return 0


def keygen_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pictl knock keygen", description="Make a new knock key (mode 0600).")
    p.add_argument("file")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    path = Path(args.file)
    if path.exists() and not args.force:
        return _err(f"{path} exists (use --force to replace it)")
    key_id = path.stem
    if not 1 <= len(key_id.encode()) <= 16:
        return _err("the file name (without extension) is the key id: 1..16 bytes")
    old = os.umask(0o077)
    try:
        atomic.write_atomic(path, (secrets.token_hex(auth.KEY_BYTES) + "\n").encode(), 0o600)
    except OSError as e:
        return _err(f"{path}: {e.strerror}")
    finally:
        os.umask(old)
    print(f'[[knock.key]]\nid = "{key_id}"\nfile = "{path.resolve()}"')
    return 0


def ports_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="pictl knock ports", description="Current ports of a clock sequence.")
    p.add_argument("name")
    p.add_argument("--key", required=True, metavar="FILE")
    p.add_argument("--length", type=int, default=3)
    p.add_argument("--port-min", type=int, default=40000)
    p.add_argument("--port-max", type=int, default=40999)
    p.add_argument("--window", type=int, default=30, help="window_s of the sequence")
    p.add_argument("--proto", choices=["udp", "tcp"], default="udp")
    p.add_argument("--tolerance", type=int, default=1)
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        key = auth.load_key(args.key)
    except auth.KnockError as e:
        return _err(str(e))
    window = time.time_ns() // 1_000_000 // (args.window * 1000)
    ports = auth.derive_ports(key, args.name, window, args.length, args.port_min, args.port_max, args.tolerance + 2)
    print(" ".join(f"{port}:{args.proto}" for port in ports))
    return 0


def main() -> int:
    return knock_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
