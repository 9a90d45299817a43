"""Depth 3: real clients over loopback against the real daemon (``pi-appliance --output sim``):
Debian's mpc, python-mpd2 (sync, with command lists; asyncio, with Home Assistant's update
cycle), and ncmpcpp driven in tmux."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import mpd
import mpd.asyncio
import pytest
from conftest import need_program
from mpd_daemon import Daemon, start_daemon

INLINE = "rtttl:Beep:d=4,o=5,b=120:c,e,g"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    d = start_daemon(tmp_path_factory.mktemp("clients"), '[mpd]\npassword = ["secret@read,add,player,control,admin"]\n'
                     'default_permissions = "read"\n')  # fmt: skip
    yield d
    assert d.stop() == 0, d.log.read_text()


def mpc(daemon: Daemon, *args: str, password: str | None = "secret", check: bool = True) -> subprocess.CompletedProcess:
    need_program("mpc")
    host = f"{password}@127.0.0.1" if password else "127.0.0.1"
    env = dict(os.environ, MPD_HOST=host, MPD_PORT=str(daemon.port))
    r = subprocess.run(["mpc", *args], env=env, capture_output=True, text=True, timeout=30)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def sync_client(daemon: Daemon, password: str | None = "secret") -> mpd.MPDClient:
    c = mpd.MPDClient()
    c.timeout = 10
    c.connect("127.0.0.1", daemon.port)
    if password:
        c.password(password)
    return c


def test_mpc_command_set(daemon: Daemon) -> None:
    # without the password: read only, exactly as MPD's permission model says
    assert "volume:" in mpc(daemon, "status", password=None).stdout
    r = mpc(daemon, "play", password=None, check=False)
    assert r.returncode == 1 and 'you don\'t have permission for "play"' in r.stderr
    r = mpc(daemon, "-h", "wrong@127.0.0.1", "status", password=None, check=False)
    assert r.returncode == 1 and "incorrect password" in r.stderr
    mpc(daemon, "clear")
    mpc(daemon, "add", "builtin/01-demo.rtttl")
    mpc(daemon, "add", "builtin/02-ode-to-joy.rtttl")
    mpc(daemon, "add", INLINE)
    assert mpc(daemon, "playlist").stdout.splitlines() == ["Twinkle Twinkle (demo)", "Ode to Joy (Beethoven)", "Beep"]
    r = mpc(daemon, "add", "no/such.rtttl", check=False)
    assert r.returncode == 1 and "No such directory" in r.stderr
    out = mpc(daemon, "play", "2").stdout
    assert out.startswith("Ode to Joy (Beethoven)\n[playing] #2/3")
    assert mpc(daemon, "current").stdout == "Ode to Joy (Beethoven)\n"
    assert "[paused]" in mpc(daemon, "pause").stdout
    assert "[playing]" in mpc(daemon, "toggle").stdout
    assert "0:03/0:16" in mpc(daemon, "seek", "0:03").stdout
    assert "[playing] #3/3" in mpc(daemon, "next").stdout
    assert "[playing] #2/3" in mpc(daemon, "prev").stdout
    assert "[playing]" not in mpc(daemon, "stop").stdout
    r = mpc(daemon, "play", "99", check=False)
    assert r.returncode == 1 and "Bad song index" in r.stderr
    for mode in ("repeat", "random", "single", "consume"):
        assert f"{mode}: on" in mpc(daemon, mode, "on").stdout
        assert f"{mode}: off" in mpc(daemon, mode, "off").stdout
    assert "single: once" in mpc(daemon, "single", "once").stdout
    mpc(daemon, "single", "off")
    assert mpc(daemon, "volume", "40").stdout.count("volume: 40%") == 1
    assert "volume: 50%" in mpc(daemon, "volume", "+10").stdout
    mpc(daemon, "del", "3")
    mpc(daemon, "save", "pair")
    r = mpc(daemon, "save", "pair", check=False)
    assert "Playlist already exists" in r.stderr
    assert "pair" in mpc(daemon, "lsplaylists").stdout.split()
    assert mpc(daemon, "playlist", "pair").stdout.splitlines() == ["Twinkle Twinkle (demo)", "Ode to Joy (Beethoven)"]
    mpc(daemon, "clear")
    mpc(daemon, "load", "pair")
    assert len(mpc(daemon, "playlist").stdout.splitlines()) == 2
    mpc(daemon, "rm", "pair")
    assert "pair" not in mpc(daemon, "lsplaylists").stdout.split()
    assert "Output 1 (sim GPIO18" in mpc(daemon, "outputs").stdout
    stats = mpc(daemon, "stats").stdout
    assert re.search(r"^Songs: +6$", stats, re.M), stats
    assert mpc(daemon, "search", "title", "ode to").stdout == "builtin/02-ode-to-joy.rtttl\n"
    assert mpc(daemon, "find", "title", "Frere Jacques").stdout == "builtin/05-frere-jacques.rtttl\n"
    assert "builtin/06-twinkle-twinkle.rtttl" in mpc(daemon, "listall").stdout
    assert mpc(daemon, "ls").stdout.split() == ["builtin", "tunes"]
    mpc(daemon, "update", "--wait")
    assert mpc(daemon, "version").stdout == "mpd version: 0.23.5\n"
    assert mpc(daemon, "replaygain").stdout == "replay_gain_mode: off\n"


def test_mpc_idle_sees_another_clients_change(daemon: Daemon) -> None:
    env = dict(os.environ, MPD_HOST="secret@127.0.0.1", MPD_PORT=str(daemon.port))
    idle = subprocess.Popen(["mpc", "idle", "mixer"], env=env, stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    mpc(daemon, "volume", "30")
    out, _ = idle.communicate(timeout=10)
    assert out == "mixer\n"


def test_python_mpd2_sync_session_and_command_lists(daemon: Daemon) -> None:
    c = sync_client(daemon)
    c.clear()
    assert c.addid("builtin/03-fur-elise.rtttl").isdigit()
    c.add("builtin/01-demo.rtttl")
    c.add(INLINE)
    songs = c.playlistinfo()
    assert [s["title"] for s in songs[-2:]] == ["Twinkle Twinkle (demo)", "Beep"]
    assert songs[0]["file"] == "builtin/03-fur-elise.rtttl" and songs[0]["time"] == "5" and songs[0]["pos"] == "0"
    assert c.playlistinfo((1, 2))[0]["pos"] == "1"
    c.play(0)
    st = c.status()
    assert st["state"] == "play" and st["song"] == "0" and "elapsed" in st and "duration" in st
    assert c.currentsong()["title"] == "Fur Elise (Beethoven)"
    c.pause(1)
    assert c.status()["state"] == "pause"
    c.pause(0)
    c.setvol(60)
    assert c.status()["volume"] == "60"
    c.repeat(1)
    c.single("oneshot")
    assert c.status()["single"] == "oneshot"
    c.single(0)
    c.repeat(0)
    # command lists: one list_OK per command, then OK; a failing list raises at its index
    c.command_list_ok_begin()
    c.status()
    c.currentsong()
    c.ping()
    st, cur, _ping = c.command_list_end()
    assert st["state"] == "play" and cur["file"] == "builtin/03-fur-elise.rtttl"
    c.command_list_ok_begin()
    c.ping()
    c.play(99)
    with pytest.raises(mpd.CommandError) as e:
        c.command_list_end()
    assert (e.value.errno, e.value.offset, e.value.command, e.value.msg) == (
        mpd.FailureResponseCode.ARG,
        1,
        "play",
        "Bad song index",
    )
    c.stop()
    c.save("sync-list")
    assert "sync-list" in [p["playlist"] for p in c.listplaylists()]
    c.rm("sync-list")
    assert [o["outputname"][:3] for o in c.outputs()] == ["sim"]
    assert {d["plugin"] for d in c.decoders()} == {"rtttl", "beep"}
    assert c.readpicture("builtin/01-demo.rtttl") == {}
    with pytest.raises(mpd.CommandError):
        c.albumart("builtin/01-demo.rtttl")
    assert "playat" in c.commands() and c.notcommands() == []
    assert c.tagtypes()[:2] == ["Artist", "ArtistSort"]
    # playat: the fleet extension, through python-mpd2's generic command sender
    at = time.time() + 0.3
    if not hasattr(mpd.MPDClient, "playat"):
        mpd.MPDClient.add_command("playat", mpd.MPDClient._parse_nothing)
    c.playat(0, f"{at:.6f}")
    time.sleep(0.6)
    assert c.status()["state"] == "play"
    c.stop()
    # idle on a second connection sees this one's change
    other = sync_client(daemon)
    got: list[list[str]] = []
    t = threading.Thread(target=lambda: got.append(other.idle("options")))
    t.start()
    time.sleep(0.3)
    c.random(1)
    t.join(10)
    assert got == [["options"]]
    c.random(0)
    other.disconnect()
    c.close()
    c.disconnect()


def test_home_assistant_update_cycle_with_asyncio_client(daemon: Daemon) -> None:
    """What homeassistant/components/mpd/media_player.py does, on python-mpd2's asyncio client:
    a new connection per update and per service call; status and currentsong must never ACK."""

    async def update(last_file: str | None) -> tuple[dict, dict]:
        client = mpd.asyncio.MPDClient()
        await client.connect("127.0.0.1", daemon.port)
        try:
            await client.password("secret")
            status = await client.status()
            current = await client.currentsong()
            if current.get("file") != last_file:
                commands = list(await client.commands())
                assert "readpicture" in commands and "albumart" in commands
                pic = await client.readpicture(current["file"]) if current else {}
                if not pic:
                    with pytest.raises(mpd.CommandError):
                        await client.albumart(current["file"])
            playlists = await client.listplaylists()
            assert isinstance(playlists, list)
            return status, current
        finally:
            client.disconnect()

    async def service(*calls: tuple) -> None:
        client = mpd.asyncio.MPDClient()
        await client.connect("127.0.0.1", daemon.port)
        try:
            await client.password("secret")
            for name, *args in calls:
                await getattr(client, name)(*args)
        finally:
            client.disconnect()

    async def idle_keepalive() -> list[str]:
        """HA's client idles between commands and sends noidle before the next one."""
        client = mpd.asyncio.MPDClient()
        await client.connect("127.0.0.1", daemon.port)
        await client.password("secret")
        changes: list[str] = []

        async def watch() -> None:
            async for subsystems in client.idle(["player"]):
                changes.extend(subsystems)
                return

        w = asyncio.create_task(watch())
        await asyncio.sleep(0.3)  # the client sends idle after 0.1 s of quiet
        await client.status()  # noidle, status, then idle again
        await service(("play",))
        await asyncio.wait_for(w, 10)
        client.disconnect()
        return changes

    async def main() -> None:
        await service(("clear",), ("add", "builtin/02-ode-to-joy.rtttl"), ("add", INLINE))
        st, cur = await update(None)
        assert st["state"] == "stop" and cur == {}
        await service(("play",))
        st, cur = await update(None)
        assert st["state"] == "play" and cur["title"] == "Ode to Joy (Beethoven)" and float(cur["duration"]) == 16.0
        await service(("pause", "1"))
        assert (await update(cur["file"]))[0]["state"] == "pause"
        await service(("pause", "0"), ("setvol", "55"), ("seekcur", "4"))
        st, _ = await update(cur["file"])
        assert st["volume"] == "55" and float(st["elapsed"]) >= 4.0
        await service(("repeat", "1"), ("single", "1"), ("random", "1"))
        st, _ = await update(cur["file"])
        assert (st["repeat"], st["single"], st["random"]) == ("1", "1", "1")
        await service(("repeat", "0"), ("single", "0"), ("random", "0"), ("next",))
        await service(("save", "ha-list"), ("clear",), ("load", "ha-list"), ("play",), ("rm", "ha-list"))
        st, cur = await update(None)
        assert st["playlistlength"] == "2" and st["state"] == "play"
        await service(("stop",))
        assert await idle_keepalive() == ["player"]
        await service(("stop",))

    asyncio.run(main())


def test_asyncio_client_noidle_first_on_a_new_connection(daemon: Daemon) -> None:
    """python-mpd2's asyncio client can send noidle as the very first line after a reconnect:
    it must get no answer, and the next command must get its own."""
    import socket

    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        assert s.recv(100) == b"OK MPD 0.23.5\n"
        s.sendall(b'noidle\npassword "secret"\nping\n')
        time.sleep(0.3)
        assert s.recv(100) == b"OK\nOK\n"


def test_ncmpcpp_in_tmux(daemon: Daemon, tmp_path: Path) -> None:
    """ncmpcpp starts, shows the queue, and ``p`` pauses and resumes."""
    need_program("ncmpcpp")
    tmux = need_program("tmux")
    mpc(daemon, "clear")
    mpc(daemon, "add", "builtin/02-ode-to-joy.rtttl")
    mpc(daemon, "add", "builtin/06-twinkle-twinkle.rtttl")
    mpc(daemon, "repeat", "on")
    mpc(daemon, "play", "2")
    home = tmp_path / "home"
    (home / ".config" / "ncmpcpp").mkdir(parents=True)
    (home / ".config" / "ncmpcpp" / "config").write_text(
        f'mpd_host = "secret@127.0.0.1"\nmpd_port = "{daemon.port}"\nmpd_connection_timeout = 5\n'
    )
    sock = str(tmp_path / "tmux.sock")
    env = dict(os.environ, HOME=str(home), TERM="xterm-256color")
    run = lambda *a: subprocess.run([tmux, "-S", sock, *a], env=env, capture_output=True, text=True, timeout=20)  # noqa: E731
    r = run("new-session", "-d", "-x", "160", "-y", "40", shutil.which("ncmpcpp") or "ncmpcpp")
    assert r.returncode == 0, r.stderr
    try:

        def screen() -> str:
            return run("capture-pane", "-p").stdout

        def wait_for(pred, what: str) -> str:  # type: ignore[no-untyped-def]
            end = time.monotonic() + 15
            while time.monotonic() < end:
                s = screen()
                if pred(s):
                    return s
                time.sleep(0.2)
            raise AssertionError(f"ncmpcpp never showed {what}:\n{screen()}")

        wait_for(lambda s: "Ode to Joy (Beethoven)" in s and "Twinkle Twinkle Little Star" in s, "the queue")
        state = lambda: mpc(daemon, "status").stdout  # noqa: E731
        assert "[playing]" in state()
        run("send-keys", "p")
        wait_for(lambda s: "[paused]" in state(), "pause")
        wait_for(lambda s: "Paused:" in s, "its own pause")
        run("send-keys", "p")
        wait_for(lambda s: "[playing]" in state(), "resume")
        time.sleep(1.5)  # its polling (noidle/status/idle) runs without desynchronising
        assert run("has-session").returncode == 0
        assert "Ode to Joy (Beethoven)" in screen()
    finally:
        run("kill-server")
        mpc(daemon, "stop")
        mpc(daemon, "repeat", "off")
