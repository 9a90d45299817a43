"""deploy/prepare_card.py on FAT images made here (mkfs.vfat, mtools; no mount, no root needed by the
tool): the files pass `cloud-init schema` and `netplan generate`, no secret is in clear text anywhere
on the card, cmdline.txt stays one line, and the Bookworm firstrun.sh really does its job when run
in a chroot of the cached Debian root."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, free_port, need_program

TOOL = ROOT / "deploy" / "prepare_card.py"
sys.path.insert(0, str(TOOL.parent))
import prepare_card  # noqa: E402

PASSPHRASE = "correct horse battery staple"
SSID = "Lab WiFi 2.4"
CMDLINE = (
    "console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 fsck.repair=yes rootwait "
    "quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n"
)
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def mtools(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(list(args), env=MTOOLS_ENV, capture_output=True, check=True)


def make_bootfs(path: Path, offset_sectors: int = 0, seed_files: bool = False) -> str:
    """A FAT32 boot partition like Raspberry Pi OS's: cmdline.txt, config.txt (and cloud-init seeds)."""
    need_program("mkfs.vfat")
    need_program("mcopy")
    subprocess.run(["truncate", "-s", "80M", str(path)], check=True)
    if offset_sectors:
        layout = f"label: dos\nstart={offset_sectors}, type=c\n"
        subprocess.run([need_program("sfdisk"), "-q", str(path)], input=layout.encode(), check=True)
        subprocess.run(
            ["mkfs.vfat", "-F", "32", "-n", "BOOTFS", "--offset", str(offset_sectors), str(path), str(60 * 1024)],
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(["mkfs.vfat", "-F", "32", "-n", "BOOTFS", str(path)], check=True, capture_output=True)
    image = f"{path}@@{offset_sectors * 512}" if offset_sectors else str(path)
    src = path.parent / "src"
    src.mkdir(exist_ok=True)
    (src / "cmdline.txt").write_text(CMDLINE)
    (src / "config.txt").write_text("dtparam=audio=on\n")
    names = ["cmdline.txt", "config.txt"]
    if seed_files:
        (src / "user-data").write_text("#cloud-config\n")
        (src / "meta-data").write_text("instance-id: stock\n")
        names += ["user-data", "meta-data"]
    mtools("mcopy", "-i", image, *[str(src / n) for n in names], "::/")
    return image


def read(image: str, name: str) -> str:
    return mtools("mtype", "-i", image, f"::/{name}").stdout.decode()


def names(image: str) -> set[str]:
    out = mtools("mdir", "-b", "-i", image, "::/").stdout.decode()
    return {line.rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()}


@pytest.fixture
def keypair(tmp_path) -> Path:
    need_program("ssh-keygen")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lab@control", "-f", str(key)], check=True)
    return key


def run_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env or dict(os.environ),
        stdin=subprocess.DEVNULL,
    )


def prepare(image: Path, keypair: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    psk_file = tmp_path / "wifi-passphrase"
    psk_file.write_text(PASSPHRASE + "\n")
    return run_tool(
        str(image),
        "--hostname", "buzzer-07",
        "--user", "lab",
        "--ssh-key", f"{keypair}.pub",
        "--wifi-ssid", SSID,
        "--wifi-country", "DE",
        "--wifi-passphrase-file", str(psk_file),
        "--timezone", "Europe/Berlin",
        "--keymap", "de",
        *extra,
    )  # fmt: skip


def cloud_config_keys() -> set[str]:
    """Every key cloud-init's own schema knows (it lets unknown top-level keys pass silently).

    Asked of the installed cloud-init with its own interpreter (Debian's python3, not this venv)."""
    exe = Path(need_program("cloud-init"))
    interpreter = exe.read_text().splitlines()[0].removeprefix("#!").split()
    program = (
        "import json\n"
        "from cloudinit.config.schema import get_schema\n"
        "keys = set()\n"
        "def walk(n):\n"
        "    if isinstance(n, dict):\n"
        "        keys.update(n.get('properties', {}))\n"
        "        [walk(v) for v in n.values()]\n"
        "    elif isinstance(n, list):\n"
        "        [walk(v) for v in n]\n"
        "walk(get_schema())\n"
        "print(json.dumps(sorted(keys)))\n"
    )
    out = subprocess.run([*interpreter, "-c", program], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_wpa_psk_matches_the_ieee_test_vector():
    # IEEE 802.11i-2004, annex H.4.1: passphrase "password", SSID "IEEE".
    assert (
        prepare_card.wpa_psk("password", "IEEE") == "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
    )


def test_cloud_init_card(tmp_path, keypair):
    img = tmp_path / "bootfs.img"
    image = make_bootfs(img)
    proc = prepare(img, keypair, tmp_path, "--format", "cloud-init")
    assert proc.returncode == 0, proc.stderr
    assert PASSPHRASE not in proc.stdout + proc.stderr
    assert {"user-data", "network-config", "meta-data", "ssh", "cmdline.txt", "config.txt"} <= names(image)

    out = tmp_path / "out"
    out.mkdir()
    for n in ("user-data", "network-config", "meta-data"):
        (out / n).write_text(read(image, n))

    # cloud-init's own validator (Debian's 22.4), without --annotate (it crashes on some errors).
    ci = subprocess.run(
        [need_program("cloud-init"), "schema", "-c", str(out / "user-data")], capture_output=True, text=True
    )
    assert ci.returncode == 0 and "Valid cloud-config" in ci.stdout, ci.stdout + ci.stderr
    user_data = yaml.safe_load((out / "user-data").read_text())
    assert (out / "user-data").read_text().startswith("#cloud-config\n")
    unknown = set(user_data) - cloud_config_keys()
    assert not unknown, f"keys cloud-init does not know (its schema would let them pass): {unknown}"
    assert user_data["hostname"] == "buzzer-07"
    assert user_data["user"]["name"] == "lab" and user_data["user"]["lock_passwd"] is True
    assert "passwd" not in user_data["user"] and "plain_text_passwd" not in user_data["user"]
    assert user_data["user"]["ssh_authorized_keys"] == [Path(f"{keypair}.pub").read_text().strip()]
    assert user_data["ssh_pwauth"] is False

    # netplan renders the network-config (as cloud-init would hand it over) into NetworkManager profiles.
    root = tmp_path / "netplan-root"
    (root / "etc" / "netplan").mkdir(parents=True)
    target = root / "etc" / "netplan" / "50-cloud-init.yaml"
    shutil.copy(out / "network-config", target)
    target.chmod(0o600)
    gen = subprocess.run([need_program("netplan"), "generate", "--root-dir", str(root)], capture_output=True, text=True)
    assert gen.returncode == 0, gen.stderr
    profiles = list((root / "run" / "NetworkManager" / "system-connections").glob("*.nmconnection"))
    wifi = [p for p in profiles if "wlan0" in p.name]
    assert len(wifi) == 1 and any("eth0" in p.name for p in profiles), profiles
    nm = wifi[0].read_text()
    assert f"ssid={SSID}" in nm
    assert f"psk={prepare_card.wpa_psk(PASSPHRASE, SSID)}" in nm

    # cmdline.txt: still one line, the original words kept, the seed's instance id appended.
    cmdline = read(image, "cmdline.txt")
    assert cmdline.count("\n") == 1 and cmdline.endswith("\n")
    words = cmdline.split()
    assert words[: len(CMDLINE.split())] == CMDLINE.split()
    meta = yaml.safe_load((out / "meta-data").read_text())
    assert words[-1] == f"ds=nocloud;i={meta['instance-id']}"

    # No secret in clear text anywhere on the card (file data, slack, directory entries).
    raw = img.read_bytes()
    assert PASSPHRASE.encode() not in raw and PASSPHRASE.encode("utf-16-le") not in raw


def test_preparing_again_replaces_rather_than_appends(tmp_path, keypair):
    img = tmp_path / "bootfs.img"
    image = make_bootfs(img)
    assert prepare(img, keypair, tmp_path, "--format", "cloud-init", "--instance-id", "one").returncode == 0
    assert prepare(img, keypair, tmp_path, "--format", "cloud-init", "--instance-id", "two").returncode == 0
    words = read(image, "cmdline.txt").split()
    assert [w for w in words if w.startswith("ds=")] == ["ds=nocloud;i=two"]
    assert read(image, "meta-data") == "instance-id: two\n"


def test_auto_format_follows_the_card(tmp_path, keypair):
    bookworm = tmp_path / "bookworm"
    bookworm.mkdir()
    image = make_bootfs(bookworm / "boot.img")
    proc = prepare(bookworm / "boot.img", keypair, bookworm)
    assert proc.returncode == 0 and "(firstrun first boot)" in proc.stdout, proc.stdout + proc.stderr
    assert "firstrun.sh" in names(image) and "user-data" not in names(image)
    trixie = tmp_path / "trixie"
    trixie.mkdir()
    image = make_bootfs(trixie / "boot.img", seed_files=True)
    proc = prepare(trixie / "boot.img", keypair, trixie)
    assert proc.returncode == 0 and "(cloud-init first boot)" in proc.stdout, proc.stdout + proc.stderr
    assert "firstrun.sh" not in names(image)
    assert read(image, "user-data").startswith("#cloud-config\nhostname:")


def test_partitioned_image_and_mounted_directory(tmp_path, keypair):
    img = tmp_path / "raspios.img"
    image = make_bootfs(img, offset_sectors=8192)  # where Raspberry Pi OS images start bootfs
    assert image.endswith("@@4194304")
    proc = prepare(img, keypair, tmp_path, "--format", "cloud-init")
    assert proc.returncode == 0, proc.stderr
    assert 'hostname: "buzzer-07"' in read(image, "user-data")
    mounted = tmp_path / "media-bootfs"
    mounted.mkdir()
    (mounted / "cmdline.txt").write_text(CMDLINE)
    proc = prepare(mounted, keypair, tmp_path, "--format", "firstrun")
    assert proc.returncode == 0, proc.stderr
    assert "systemd.run=/boot/firstrun.sh" in (mounted / "cmdline.txt").read_text()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--hostname": "Buzzer_07"}, "hostname 'Buzzer_07'"),
        ({"--user": "root"}, "user 'root'"),
        ({"--wifi-country": ""}, "--wifi-country"),
        ({"--password-hash": "hunter22"}, "never a password"),
        ({"--ssh-key": "PRIVATE"}, "this is a private key"),
        ({"--wifi-ssid": "Lab\nPI_APPLIANCE_WIFI"}, "--wifi-ssid"),
    ],
)
def test_bad_input_is_refused_with_one_line(tmp_path, keypair, change, message):
    img = tmp_path / "bootfs.img"
    make_bootfs(img)
    before = img.read_bytes()
    (tmp_path / "psk").write_text(PASSPHRASE)
    args = {
        "--hostname": "buzzer-07",
        "--user": "lab",
        "--ssh-key": f"{keypair}.pub",
        "--wifi-ssid": SSID,
        "--wifi-country": "DE",
        "--wifi-passphrase-file": str(tmp_path / "psk"),
    }
    args.update(change)
    if args["--ssh-key"] == "PRIVATE":
        args["--ssh-key"] = str(keypair)
    flat = [x for k, v in args.items() for x in (k, v)]
    proc = run_tool(str(img), *flat)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert img.read_bytes() == before, "a refused run must not touch the card"


def test_not_a_boot_partition(tmp_path, keypair):
    img = tmp_path / "blank.img"
    subprocess.run(["truncate", "-s", "40M", str(img)], check=True)
    subprocess.run(["mkfs.vfat", str(img)], check=True, capture_output=True)
    proc = run_tool(str(img), "--hostname", "b", "--user", "lab", "--ssh-key", f"{keypair}.pub")
    assert proc.returncode == 2 and "not a Raspberry Pi OS boot partition" in proc.stderr


def test_handover_waits_for_ssh_then_hands_the_host_to_the_playbook():
    cmd = run_tool("handover", "buzzer-07.local", "--user", "lab", "--print-only")
    assert cmd.returncode == 0
    assert cmd.stdout.split()[:5] == ["ansible-playbook", "-i", "buzzer-07.local,", "-u", "lab"]
    assert cmd.stdout.strip().endswith("ansible/site.yml")
    port = free_port()
    assert prepare_card.wait_for_port("127.0.0.1", port, timeout=0.3, interval=0.1) is False
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    timer = threading.Timer(0.3, srv.listen)
    timer.start()
    try:
        assert prepare_card.wait_for_port("127.0.0.1", port, timeout=10, interval=0.1) is True
    finally:
        timer.cancel()
        srv.close()


@pytest.mark.timeout(900)  # builds the cached root when it is absent
def test_firstrun_script_does_its_job_in_a_debian_root(tmp_path, keypair):
    """Bookworm's path without Imager's helpers: run firstrun.sh in a chroot of the cached root."""
    import deploy_rootfs

    if os.geteuid() != 0:
        pytest.fail("this test needs root (chroot); CI runs as root")
    with contextlib.ExitStack() as stack:
        try:
            root = stack.enter_context(deploy_rootfs.scratch_root(tmp_path / "scratch"))
        except RuntimeError as e:
            pytest.fail(str(e))
        boot = root / "boot" / "firmware"
        boot.mkdir(parents=True)
        (boot / "cmdline.txt").write_text(CMDLINE)
        proc = prepare(boot, keypair, tmp_path, "--format", "firstrun")
        assert proc.returncode == 0, proc.stderr
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        subprocess.run(
            ["chroot", str(root), "useradd", "-m", "-u", "1000", "-s", "/bin/bash", "pi"], check=True, env=env
        )
        run = subprocess.run(
            ["chroot", str(root), "bash", "/boot/firmware/firstrun.sh"], capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert (root / "etc" / "hostname").read_text().strip() == "buzzer-07"
        passwd = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()}
        assert "lab" in passwd and "pi" not in passwd and passwd["lab"][2] == "1000"
        shadow = {line.split(":")[0]: line.split(":") for line in (root / "etc" / "shadow").read_text().splitlines()}
        assert shadow["lab"][1] == "*", "the password must stay locked"
        keys = root / "home" / "lab" / ".ssh" / "authorized_keys"
        assert keys.read_text().strip() == Path(f"{keypair}.pub").read_text().strip()
        assert oct(keys.stat().st_mode & 0o777) == "0o600"
        assert "NOPASSWD" in (root / "etc" / "sudoers.d" / "010_pi-appliance-nopasswd").read_text()
        wifi = root / "etc" / "NetworkManager" / "system-connections" / "preconfigured.nmconnection"
        assert f"psk={prepare_card.wpa_psk(PASSPHRASE, SSID)}" in wifi.read_text()
        assert PASSPHRASE not in wifi.read_text()
        assert (root / "etc" / "timezone").read_text().strip() == "Europe/Berlin"
        assert not (boot / "firstrun.sh").exists(), "firstrun.sh must remove itself"
        assert (boot / "cmdline.txt").read_text() == CMDLINE, "and take itself off cmdline.txt"


def test_cloud_config_keys_come_from_cloud_inits_schema():
    keys = cloud_config_keys()
    assert {"hostname", "user", "runcmd", "packages", "ssh_pwauth"} <= keys
    assert "foo" not in keys
