#!/usr/bin/env python3
"""Prepare a Raspberry Pi OS card (or image file) for a headless first boot, without root.

Writes onto the FAT boot partition (``bootfs``), the way Raspberry Pi Imager's "OS customisation" does:

- cloud-init ``user-data``, ``network-config`` (netplan v2) and ``meta-data``, plus
  ``ds=nocloud;i=<instance-id>`` on ``cmdline.txt``: current Raspberry Pi OS (Trixie, cloud-init);
- ``firstrun.sh`` run once through ``systemd.run=`` on ``cmdline.txt``: Raspberry Pi OS Bookworm.

It sets the hostname, a user who logs in with an SSH key only (the password is locked unless you
give a crypt(3) hash; a plaintext password is never accepted), SSH, Wi-Fi (the passphrase is turned
into the WPA PSK, so the card never holds the passphrase), timezone and keyboard.

TARGET is one of: an image file or block device with a partition table (the first FAT partition is
used, or ``--partition N``), a bare FAT file system (an image or a partition such as /dev/sdb1; mtools
reads and writes it, so no mount and no root), or a directory where bootfs is mounted. Files are
validated before they are written (``--out DIR`` writes them to a directory instead, to inspect).

After the Pi's first boot, ``prepare_card.py handover HOST`` waits for SSH and runs the playbook.

Standard library only: run it with any Python 3.10+ on the control machine; mtools for images.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import getpass
import hashlib
import json
import os
import re
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAYBOOK = HERE.parent / "ansible" / "site.yml"
FAT_TYPES = {0x01, 0x04, 0x06, 0x0B, 0x0C, 0x0E}  # FAT12/16/32 (CHS and LBA)
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
CMDLINE_FIRSTRUN = (
    "systemd.run=/boot/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
)
SEED_FILES = ("user-data", "network-config", "meta-data")


class CardError(Exception):
    """A problem with the arguments or the card; printed as one line."""


# --- the settings ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wifi:
    ssid: str
    psk: str  # 64 hex digits: the WPA pre-shared key derived from the passphrase, never the passphrase
    country: str
    hidden: bool = False


@dataclass(frozen=True)
class FirstBoot:
    hostname: str
    user: str
    ssh_keys: tuple[str, ...]
    password_hash: str = ""  # crypt(3) hash, "" = password login locked
    wifi: Wifi | None = None
    timezone: str = ""
    keymap: str = ""
    instance_id: str = ""
    extra_packages: tuple[str, ...] = field(default_factory=tuple)


def wpa_psk(passphrase: str, ssid: str) -> str:
    """The WPA2-Personal PSK (IEEE 802.11i: PBKDF2-HMAC-SHA1, 4096 rounds, 256 bits), as wpa_passphrase does."""
    if not 8 <= len(passphrase) <= 63 or not passphrase.isascii():
        raise CardError("the Wi-Fi passphrase must be 8 to 63 ASCII characters")
    return hashlib.pbkdf2_hmac("sha1", passphrase.encode(), ssid.encode(), 4096, 32).hex()


def check_hostname(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", name):
        raise CardError(f"hostname {name!r}: use 1-63 lowercase letters, digits and inner hyphens")
    return name


def check_user(name: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_-]{0,31}", name) or name in ("root", "pi-appliance"):
        raise CardError(f"user {name!r}: use a lowercase POSIX user name (not root, not pi-appliance)")
    return name


def check_ssh_key(line: str, source: str) -> str:
    line = line.strip()
    if "PRIVATE KEY" in line:
        raise CardError(f"{source}: this is a private key; give the .pub file")
    parts = line.split()
    if len(parts) < 2 or parts[0] not in SSH_KEY_TYPES:
        raise CardError(f"{source}: not an OpenSSH public key line ({', '.join(SSH_KEY_TYPES[:3])}, ...)")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        raise CardError(f"{source}: the key's base64 is damaged") from None
    (n,) = struct.unpack(">I", blob[:4]) if len(blob) >= 4 else (0,)
    if blob[4 : 4 + n].decode("ascii", "replace") != parts[0]:
        raise CardError(f"{source}: the key's type does not match its data")
    return line


def check_password_hash(value: str) -> str:
    if value and not re.fullmatch(r"\$(1|5|6|y|gy|2[abxy]?)\$[./A-Za-z0-9$=,]+", value):
        raise CardError("--password-hash takes a crypt(3) hash (openssl passwd -6, mkpasswd), never a password")
    return value


# --- the files ------------------------------------------------------------------------------------------


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "null"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a YAML double-quoted scalar


def to_yaml(value: object, indent: int = 0) -> str:
    """Block-style YAML for dicts, lists and scalars (every string quoted: no YAML type surprises)."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            key = _yaml_scalar(k) if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(k)) else str(k)
            if isinstance(v, dict | list) and v:
                lines.append(f"{pad}{key}:")
                lines.append(to_yaml(v, indent + 1))
            elif isinstance(v, dict | list):
                lines.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_yaml_scalar(v)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict | list) and item:
                body = to_yaml(item, indent + 1).lstrip()
                lines.append(f"{pad}- {body}")
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))
    return "\n".join(lines)


def user_data(fb: FirstBoot) -> str:
    user: dict[str, object] = {
        "name": fb.user,
        "shell": "/bin/bash",
        # Ansible logs in with the key and becomes root with sudo: there is no password to type.
        "sudo": "ALL=(ALL) NOPASSWD:ALL",
        "ssh_authorized_keys": list(fb.ssh_keys),
    }
    if fb.password_hash:
        user["lock_passwd"] = False
        user["passwd"] = fb.password_hash
    else:
        user["lock_passwd"] = True
    cfg: dict[str, object] = {
        "hostname": fb.hostname,
        "manage_etc_hosts": True,
        # The singular key renames the image's default user and so keeps its groups (gpio, sudo...).
        "user": user,
        "ssh_pwauth": False,
        "disable_root": True,
        "packages": ["avahi-daemon", *fb.extra_packages],
        "runcmd": [["systemctl", "enable", "--now", "ssh"]],
    }
    if fb.timezone:
        cfg["timezone"] = fb.timezone
    if fb.keymap:
        cfg["keyboard"] = {"layout": fb.keymap}
    return "#cloud-config\n" + to_yaml(cfg) + "\n"


def network_config(fb: FirstBoot) -> str:
    net: dict[str, object] = {
        "version": 2,
        "renderer": "NetworkManager",  # what Raspberry Pi OS runs since Bookworm
        "ethernets": {"eth0": {"dhcp4": True, "dhcp6": True, "optional": True}},
    }
    if fb.wifi is not None:
        ap: dict[str, object] = {"password": fb.wifi.psk}
        if fb.wifi.hidden:
            ap["hidden"] = True
        net["wifis"] = {
            "wlan0": {
                "dhcp4": True,
                "dhcp6": True,
                "optional": True,
                "regulatory-domain": fb.wifi.country,
                "access-points": {fb.wifi.ssid: ap},
            }
        }
    return to_yaml({"network": net}) + "\n"


def meta_data(fb: FirstBoot) -> str:
    return f"instance-id: {fb.instance_id}\n"


def firstrun_sh(fb: FirstBoot) -> str:
    """The Bookworm first-boot script, in the shape Raspberry Pi Imager writes (its helpers where present)."""
    q = shlex.quote
    keys = "\n".join(fb.ssh_keys)
    lines = [
        "#!/bin/bash",
        "# Written by pi-appliance deploy/prepare_card.py; runs once at first boot, then removes itself.",
        "set +e",
        "BOOT=/boot; [ -f /boot/firmware/cmdline.txt ] && BOOT=/boot/firmware",
        'CURRENT_HOSTNAME=$(tr -d " \\t\\n\\r" </etc/hostname)',
        f"NEW_HOSTNAME={q(fb.hostname)}",
        "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
        '   /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname "$NEW_HOSTNAME"',
        "else",
        '   echo "$NEW_HOSTNAME" >/etc/hostname',
        '   sed -i "s/127.0.1.1.*$CURRENT_HOSTNAME/127.0.1.1\\t$NEW_HOSTNAME/g" /etc/hosts',
        "fi",
        f"NEW_USER={q(fb.user)}",
        # "*" is no valid hash: password login stays impossible, SSH keys work.
        f"PASSWORD_HASH={q(fb.password_hash or '*')}",
        "FIRSTUSER=$(getent passwd 1000 | cut -d: -f1)",
        "if [ -f /usr/lib/userconf-pi/userconf ]; then",
        '   /usr/lib/userconf-pi/userconf "$NEW_USER" "$PASSWORD_HASH"',
        "else",
        '   echo "$FIRSTUSER:$PASSWORD_HASH" | chpasswd -e',
        '   if [ -n "$FIRSTUSER" ] && [ "$FIRSTUSER" != "$NEW_USER" ]; then',
        '      usermod -l "$NEW_USER" "$FIRSTUSER"',
        '      usermod -m -d "/home/$NEW_USER" "$NEW_USER"',
        '      groupmod -n "$NEW_USER" "$FIRSTUSER"',
        '      sed -i "s/^$FIRSTUSER:/$NEW_USER:/" /etc/subuid /etc/subgid 2>/dev/null',
        "   fi",
        "fi",
        'NEW_HOME=$(getent passwd "$NEW_USER" | cut -d: -f6)',
        'install -d -m 700 -o "$NEW_USER" -g "$NEW_USER" "$NEW_HOME/.ssh"',
        "cat >\"$NEW_HOME/.ssh/authorized_keys\" <<'PI_APPLIANCE_KEYS'",
        keys,
        "PI_APPLIANCE_KEYS",
        'chown "$NEW_USER:$NEW_USER" "$NEW_HOME/.ssh/authorized_keys"; chmod 600 "$NEW_HOME/.ssh/authorized_keys"',
        "install -d -m 755 /etc/sudoers.d",
        'echo "$NEW_USER ALL=(ALL) NOPASSWD:ALL" >/etc/sudoers.d/010_pi-appliance-nopasswd',
        "chmod 440 /etc/sudoers.d/010_pi-appliance-nopasswd",
        "sed -i 's/^#\\?PasswordAuthentication.*/PasswordAuthentication no/' /etc/ssh/sshd_config",
        "systemctl enable ssh",
    ]
    if fb.wifi is not None:
        w = fb.wifi
        lines += [
            "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
            f"   /usr/lib/raspberrypi-sys-mods/imager_custom set_wlan {'-h ' if w.hidden else ''}"
            f"{q(w.ssid)} {q(w.psk)} {q(w.country)}",
            "else",
            "   install -d -m 700 /etc/NetworkManager/system-connections",
            "   cat >/etc/NetworkManager/system-connections/preconfigured.nmconnection <<'PI_APPLIANCE_WIFI'",
            "[connection]",
            "id=preconfigured",
            "type=wifi",
            "[wifi]",
            "mode=infrastructure",
            f"ssid={w.ssid}",
            f"hidden={'true' if w.hidden else 'false'}",
            "[wifi-security]",
            "key-mgmt=wpa-psk",
            f"psk={w.psk}",
            "[ipv4]",
            "method=auto",
            "[ipv6]",
            "method=auto",
            "PI_APPLIANCE_WIFI",
            "   chmod 600 /etc/NetworkManager/system-connections/preconfigured.nmconnection",
            f"   iw reg set {q(w.country)} 2>/dev/null; rfkill unblock wifi 2>/dev/null",
            "fi",
        ]
    if fb.timezone:
        lines += [
            "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
            f"   /usr/lib/raspberrypi-sys-mods/imager_custom set_timezone {q(fb.timezone)}",
            "else",
            f"   ln -sf /usr/share/zoneinfo/{q(fb.timezone)} /etc/localtime; echo {q(fb.timezone)} >/etc/timezone",
            "fi",
        ]
    if fb.keymap:
        lines += [
            "if [ -f /usr/lib/raspberrypi-sys-mods/imager_custom ]; then",
            f"   /usr/lib/raspberrypi-sys-mods/imager_custom set_keymap {q(fb.keymap)}",
            "fi",
        ]
    lines += [
        'rm -f "$BOOT/firstrun.sh"',
        "sed -i 's| systemd.run.*||g' \"$BOOT/cmdline.txt\"",
        "exit 0",
    ]
    return "\n".join(lines) + "\n"


def patch_cmdline(cmdline: str, fmt: str, instance_id: str) -> str:
    """One line: drop earlier first-boot hooks, then add this format's."""
    words = cmdline.replace("\r", " ").replace("\n", " ").split()
    drop = ("ds=", "systemd.run=", "systemd.run_success_action=", "systemd.unit=kernel-command-line.target")
    words = [w for w in words if not w.startswith(drop)]
    if fmt == "cloud-init":
        words.append(f"ds=nocloud;i={instance_id}")
    else:
        words.extend(CMDLINE_FIRSTRUN.split())
    return " ".join(words) + "\n"


# --- the card -------------------------------------------------------------------------------------------


def _is_fat_boot_sector(sector: bytes) -> bool:
    return sector[510:512] == b"\x55\xaa" and (sector[54:59] in (b"FAT12", b"FAT16") or sector[82:87] == b"FAT32")


def fat_offset(image: Path, partition: int | None) -> int:
    """Byte offset of the FAT file system in an image or device: 0 for a bare one, else its MBR partition's."""
    try:
        with open(image, "rb") as f:
            sector = f.read(512)
    except OSError as e:
        raise CardError(f"{image}: {e.strerror}") from None
    if len(sector) < 512:
        raise CardError(f"{image}: too small to be a card or an image")
    if partition is None and _is_fat_boot_sector(sector):
        return 0
    if sector[510:512] != b"\x55\xaa":
        raise CardError(f"{image}: neither a FAT file system nor a partitioned image (no boot signature)")
    entries = [struct.unpack_from("<B3xBxxxII", sector, 446 + 16 * i) for i in range(4)]
    if entries[0][1] == 0xEE:
        raise CardError(f"{image}: a GPT disk; Raspberry Pi OS images use MBR: give the boot partition itself")
    candidates = [(i + 1, e) for i, e in enumerate(entries) if e[1] in FAT_TYPES and e[2] > 0]
    if partition is not None:
        candidates = [(n, e) for n, e in candidates if n == partition]
    if not candidates:
        which = f"partition {partition}" if partition else "a FAT partition"
        raise CardError(f"{image}: no {which} in the partition table")
    return candidates[0][1][2] * 512


class Bootfs:
    """The boot partition: a mounted directory, or a FAT image/device reached with mtools."""

    def __init__(self, target: Path, partition: int | None = None) -> None:
        self.target = target
        self.directory = target.is_dir()
        self.offset = 0 if self.directory else fat_offset(target, partition)
        if not self.directory:
            for tool in ("mcopy", "mtype", "mdir", "mdel"):
                if shutil.which(tool) is None:
                    raise CardError(f"{tool} not found: install mtools (apt-get install mtools)")

    def _image(self) -> str:
        return f"{self.target}@@{self.offset}" if self.offset else str(self.target)

    def _mtools(self, *args: str, input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")  # cards formatted by other tools have odd geometry
        return subprocess.run([*args], input=input_bytes, capture_output=True, env=env, check=False)

    def read(self, name: str) -> bytes | None:
        if self.directory:
            p = self.target / name
            return p.read_bytes() if p.exists() else None
        r = self._mtools("mtype", "-i", self._image(), f"::/{name}")
        return r.stdout if r.returncode == 0 else None

    def names(self) -> set[str]:
        if self.directory:
            return {p.name for p in self.target.iterdir()}
        r = self._mtools("mdir", "-b", "-i", self._image(), "::/")
        if r.returncode != 0:
            raise CardError(f"{self.target}: mtools cannot read a FAT file system here: {r.stderr.decode().strip()}")
        return {line.rsplit("/", 1)[-1] for line in r.stdout.decode().splitlines() if line.strip()}

    def write(self, name: str, data: bytes) -> None:
        if self.directory:
            tmp = self.target / f".{name}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, self.target / name)
            return
        with tempfile.TemporaryDirectory(prefix="prepare-card-") as d:
            src = Path(d) / name
            src.write_bytes(data)
            r = self._mtools("mcopy", "-o", "-i", self._image(), str(src), f"::/{name}")
        if r.returncode != 0:
            raise CardError(f"{self.target}: writing {name} failed: {r.stderr.decode().strip()}")

    def remove(self, name: str) -> None:
        if self.directory:
            (self.target / name).unlink(missing_ok=True)
        else:
            self._mtools("mdel", "-i", self._image(), f"::/{name}")


def choose_format(requested: str, present: set[str]) -> str:
    if requested != "auto":
        return requested
    # Cloud-init images of Raspberry Pi OS carry seed files on bootfs; Bookworm's do not.
    return "cloud-init" if any(n in present for n in SEED_FILES) else "firstrun"


def render(fb: FirstBoot, fmt: str) -> dict[str, bytes]:
    if fmt == "cloud-init":
        files = {"user-data": user_data(fb), "network-config": network_config(fb), "meta-data": meta_data(fb)}
    else:
        files = {"firstrun.sh": firstrun_sh(fb)}
    files["ssh"] = ""  # sshswitch enables SSH and deletes it (belt and braces for both formats)
    return {k: v.encode() for k, v in files.items()}


def prepare(target: Path, fb: FirstBoot, fmt: str = "auto", partition: int | None = None) -> tuple[str, list[str]]:
    """Write the first-boot files onto the card; return the format used and the files written."""
    card = Bootfs(target, partition)
    present = card.names()
    if "cmdline.txt" not in present:
        raise CardError(f"{target}: no cmdline.txt: this is not a Raspberry Pi OS boot partition")
    fmt = choose_format(fmt, present)
    files = render(fb, fmt)
    cmdline = (card.read("cmdline.txt") or b"").decode()
    files["cmdline.txt"] = patch_cmdline(cmdline, fmt, fb.instance_id).encode()
    # The other format's leftovers would run too, or confuse the next reader.
    stale = ["firstrun.sh"] if fmt == "cloud-init" else [n for n in SEED_FILES if n in present]
    for name in stale:
        if name in present:
            card.remove(name)
    for name, data in files.items():
        card.write(name, data)
    return fmt, list(files)


# --- the hand-over --------------------------------------------------------------------------------------


def wait_for_port(host: str, port: int, timeout: float, interval: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(interval, 5.0)):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


def playbook_command(host: str, user: str, playbook: Path, extra: list[str]) -> list[str]:
    return ["ansible-playbook", "-i", f"{host},", "-u", user, "-e", "pi_appliance_hosts=all", str(playbook), *extra]


# --- the command line -----------------------------------------------------------------------------------


def _read_passphrase(args: argparse.Namespace) -> str:
    if args.wifi_passphrase_file:
        text = Path(args.wifi_passphrase_file).read_text().rstrip("\r\n")
        return text
    env = os.environ.get("PI_WIFI_PASSPHRASE")
    if env:
        return env
    if sys.stdin.isatty():
        return getpass.getpass(f"Wi-Fi passphrase for {args.wifi_ssid!r}: ")
    raise CardError("--wifi-ssid needs the passphrase: --wifi-passphrase-file FILE, $PI_WIFI_PASSPHRASE, or a terminal")


def first_boot_from_args(args: argparse.Namespace) -> FirstBoot:
    keys: list[str] = []
    for path in args.ssh_key:
        try:
            text = Path(path).expanduser().read_text()
        except OSError as e:
            raise CardError(f"{path}: {e.strerror}") from None
        keys += [check_ssh_key(line, path) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not keys:
        raise CardError("give at least one --ssh-key FILE.pub: the Pi has no password login")
    wifi = None
    if args.wifi_ssid:
        if not re.fullmatch(r"[A-Z]{2}", args.wifi_country or ""):
            raise CardError("--wifi-country: Wi-Fi needs the two-letter country code (ISO 3166), e.g. DE or GB")
        if not 1 <= len(args.wifi_ssid.encode()) <= 32 or not args.wifi_ssid.isprintable():
            raise CardError("--wifi-ssid: 1 to 32 bytes, no control characters")
        psk = wpa_psk(_read_passphrase(args), args.wifi_ssid)
        wifi = Wifi(args.wifi_ssid, psk, args.wifi_country, args.wifi_hidden)
    hostname = check_hostname(args.hostname)
    instance_id = args.instance_id or f"pi-appliance-{hostname}-{int(time.time() * 1000)}"
    if not re.fullmatch(r"[A-Za-z0-9._-]+", instance_id):
        raise CardError("--instance-id: letters, digits, '.', '_' and '-' only (it goes on cmdline.txt)")
    if args.timezone and not re.fullmatch(r"[A-Za-z0-9_+\-/]+", args.timezone):
        raise CardError(f"--timezone {args.timezone!r}: a tz database name such as Europe/Berlin")
    if args.keymap and not re.fullmatch(r"[a-z]{2,8}", args.keymap):
        raise CardError(f"--keymap {args.keymap!r}: an XKB layout such as us or de")
    return FirstBoot(
        hostname=hostname,
        user=check_user(args.user),
        ssh_keys=tuple(keys),
        password_hash=check_password_hash(args.password_hash or ""),
        wifi=wifi,
        timezone=args.timezone or "",
        keymap=args.keymap or "",
        instance_id=instance_id,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="prepare_card.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command")
    c = sub.add_parser("card", help="write the first-boot files (the default command)")
    c.add_argument("target", help="image file, device, FAT partition, or mounted bootfs directory")
    c.add_argument("--hostname", required=True)
    c.add_argument("--user", required=True, help="the login user (renames the image's first user)")
    c.add_argument("--ssh-key", action="append", default=[], metavar="FILE.pub", help="authorized key(s); repeatable")
    c.add_argument("--password-hash", metavar="HASH", help="crypt(3) hash for console login (default: locked)")
    c.add_argument("--wifi-ssid")
    c.add_argument("--wifi-country", metavar="CC")
    c.add_argument("--wifi-hidden", action="store_true")
    c.add_argument("--wifi-passphrase-file", metavar="FILE", help="else $PI_WIFI_PASSPHRASE, else asked for")
    c.add_argument("--timezone", metavar="TZ")
    c.add_argument("--keymap", metavar="LAYOUT")
    c.add_argument(
        "--format",
        choices=["auto", "cloud-init", "firstrun"],
        default="auto",
        help="cloud-init: current Raspberry Pi OS; firstrun: Bookworm (auto: cloud-init if seed files are there)",
    )
    c.add_argument("--instance-id", help="cloud-init instance id (default: new on every run, so edits apply)")
    c.add_argument("--partition", type=int, metavar="N", help="partition number of bootfs in a partitioned image")
    c.add_argument("--out", metavar="DIR", help="write the files to DIR instead of a card (to inspect them)")
    h = sub.add_parser("handover", help="after first boot: wait for SSH, then run the playbook on the Pi")
    h.add_argument("host", help="e.g. buzzer-01.local")
    h.add_argument("--user", required=True)
    h.add_argument("--ssh-port", type=int, default=22)
    h.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for SSH (first boot reboots once)")
    h.add_argument("--playbook", default=str(PLAYBOOK))
    h.add_argument("--print-only", action="store_true", help="print the ansible-playbook command, run nothing")
    h.add_argument("extra", nargs="*", help="passed to ansible-playbook after --")
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] not in ("card", "handover", "-h", "--help"):
        args_list.insert(0, "card")
    return p.parse_args(args_list)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "handover":
            cmd = playbook_command(args.host, args.user, Path(args.playbook), args.extra)
            if args.print_only:
                print(shlex.join(cmd))
                return 0
            print(f"waiting for {args.host}:{args.ssh_port} (first boot takes a few minutes and reboots once)")
            if not wait_for_port(args.host, args.ssh_port, args.timeout):
                raise CardError(f"{args.host}:{args.ssh_port} did not answer in {args.timeout:.0f} s")
            print("+ " + shlex.join(cmd), flush=True)
            return subprocess.call(cmd, cwd=Path(args.playbook).resolve().parent)
        if args.command is None:
            print("usage: prepare_card.py [card] TARGET --hostname NAME --user NAME --ssh-key FILE.pub ... "
                  "| handover HOST --user NAME  (--help for more)", file=sys.stderr)  # fmt: skip
            return 2
        fb = first_boot_from_args(args)
        if args.out:
            out = Path(args.out)
            out.mkdir(parents=True, exist_ok=True)
            fmt = "firstrun" if args.format == "firstrun" else "cloud-init"
            for name, data in render(fb, fmt).items():
                (out / name).write_bytes(data)
            print(f"wrote the {fmt} files to {out}")
            return 0
        fmt, written = prepare(Path(args.target), fb, args.format, args.partition)
        print(f"{args.target}: wrote {', '.join(written)} ({fmt} first boot)")
        print(f"next: boot the Pi, then  python3 {Path(__file__).name} handover {fb.hostname}.local --user {fb.user}")
        return 0
    except CardError as e:
        print(f"prepare_card.py: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
