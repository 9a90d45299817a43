"""Depth 2: a session over an in-memory stream, with small doubles of the player and library."""

from __future__ import annotations

import asyncio
import dataclasses
import re

import pytest
from mpd_doubles import FakeLibrary, FakePlayer, MemoryClient

from pi_appliance.config import MpdSettings
from pi_appliance.mpd.app import App


@pytest.fixture
async def app():  # type: ignore[no-untyped-def]
    lib = FakeLibrary()
    player = FakePlayer(lib)
    await player.start()
    a = App(player, lib, MpdSettings())  # type: ignore[arg-type]
    yield a
    a.close()


async def client(app: App, **kw) -> MemoryClient:  # type: ignore[no-untyped-def]
    c = MemoryClient(app, **kw)
    await c.settle()
    assert c.take() == "OK MPD 0.23.5\n"
    return c


async def test_greeting_ping_and_framing(app: App) -> None:
    c = await client(app)
    assert await c.cmd("ping") == "OK\n"
    assert await c.send("ping\r\n") == "OK\n"
    assert await c.send("ping   \n") == "OK\n"
    assert await c.send("pi") == ""  # half a line waits for the rest
    assert await c.send("ng\n") == "OK\n"
    assert await c.cmd("foo") == 'ACK [5@0] {} unknown command "foo"\n'
    assert await c.cmd("status 1") == 'ACK [2@0] {status} wrong number of arguments for "status"\n'
    assert await c.cmd('ping "x') == "ACK [5@0] {} Missing closing '\"'\n"
    assert await c.cmd("foo" + " a" * 64) == "ACK [2@0] {} Too many arguments\n"
    assert not c.closed


@pytest.mark.parametrize("line", ["", "Ping", "1ping", "GET / HTTP/1.1", " ping", "\x00"])
async def test_first_byte_not_lowercase_closes_silently(app: App, line: str) -> None:
    c = await client(app)
    assert await c.cmd(line, "ping") == ""
    assert c.closed


async def test_bad_command_word_is_answered_then_closed(app: App) -> None:
    c = await client(app)
    assert await c.cmd('ping"x"', "ping") == "ACK [5@0] {} Invalid word character\n"
    assert c.closed


async def test_line_length_limit(app: App) -> None:
    c = await client(app)
    assert await c.cmd("ping " + "x" * (8191 - 5)) == 'ACK [2@0] {ping} wrong number of arguments for "ping"\n'
    assert await c.cmd("ping " + "x" * (8192 - 5)) == ""
    assert c.closed
    c = await client(app)
    assert await c.send("p" * 9000) == ""  # no newline at all: the buffer fills, closed
    assert c.closed


async def test_command_lists(app: App) -> None:
    c = await client(app)
    assert await c.cmd("command_list_ok_begin", "ping", "status", "command_list_end") == (
        "list_OK\n" + (await _status_text(app)) + "list_OK\nOK\n"
    )
    assert await c.cmd("command_list_ok_begin", "ping", "play 99", "ping", "command_list_end") == (
        "list_OK\nACK [2@1] {play} Bad song index\n"
    )
    assert await c.cmd("command_list_begin", "ping", "ping", "command_list_end") == "OK\n"
    assert await c.cmd("command_list_begin", "command_list_end") == "OK\n"
    assert await c.cmd("command_list_begin", "ping", "command_list_begin", "command_list_end") == (
        'ACK [5@1] {} unknown command "command_list_begin"\n'
    )
    assert await c.cmd("command_list_end") == 'ACK [5@0] {} unknown command "command_list_end"\n'
    assert await c.cmd("command_list_begin x") == 'ACK [5@0] {} unknown command "command_list_begin"\n'
    assert await c.cmd("command_list_ok_begin", "ping", "close", "ping", "command_list_end") == "list_OK\n"
    assert c.closed


async def _status_text(app: App) -> str:
    c = MemoryClient(app)
    out = await c.cmd("status")
    await c.eof()
    return out.split("\n", 1)[1][: -len("OK\n")]


async def test_command_list_size_limit_closes(app: App) -> None:
    small = App(app.player, app.library, MpdSettings(max_command_list_size=1024))
    c = await client(small)
    assert await c.cmd("command_list_begin", *(["ping"] * 100)) == ""
    assert not c.closed
    assert await c.cmd(*(["ping"] * 200)) == ""
    assert c.closed
    small.close()


async def test_output_buffer_limit_closes(app: App) -> None:
    small = App(app.player, app.library, MpdSettings(max_output_buffer_size=4096))
    c = await client(small)
    assert (await c.cmd("playlistinfo")).endswith("OK\n")
    # 200 statuses in one list are far more than 4 KiB + 16 KiB: MPD closes without a word
    assert await c.cmd("command_list_begin", *(["status"] * 200), "command_list_end") == ""
    assert c.closed
    small.close()


async def test_idle_and_noidle(app: App) -> None:
    a, b = await client(app), await client(app)
    assert await b.cmd("noidle") == ""  # not idling: nothing at all
    assert await b.cmd("idle") == ""
    assert await a.cmd("setvol 50") == "OK\n"
    assert b.take() == "changed: mixer\nOK\n"
    assert await b.cmd('idle "Player" Mixer') == ""
    assert await b.cmd("noidle") == "OK\n"
    assert await b.cmd("noidle") == ""  # the stray noidle ncmpcpp and python-mpd2 send
    assert await b.cmd("idle foo") == "ACK [2@0] {idle} Unrecognized idle event: foo\n"
    # events are kept while not idling, reported in MPD's fixed order
    await a.cmd("repeat 1", "setvol 40", "add builtin/01-demo.rtttl")
    assert await b.cmd("idle") == "changed: playlist\nchanged: mixer\nchanged: options\nOK\n"
    # unsubscribed events wait, but a delivered notification clears them all (MPD's idle_flags = 0)
    await a.cmd("setvol 30")
    assert await b.cmd("idle player") == ""
    await a.cmd("play 0")
    assert b.take() == "changed: player\nOK\n"
    assert await b.cmd("idle mixer") == ""
    assert await b.cmd("noidle") == "OK\n"
    # anything but noidle while idling closes the connection
    assert await b.cmd("idle", "status") == ""
    assert b.closed


async def test_idle_inside_command_list(app: App) -> None:
    a, b = await client(app), await client(app)
    assert await b.cmd("command_list_ok_begin", "ping", "idle", "ping", "command_list_end") == "list_OK\n"
    await a.cmd("stop")
    assert b.take() == "changed: player\nOK\n"


async def test_own_events_are_reported(app: App) -> None:
    c = await client(app)
    await c.cmd("random 1")
    assert await c.cmd("idle options") == "changed: options\nOK\n"


async def test_passwords_and_permissions(app: App) -> None:
    s = MpdSettings(password=["pw@read,add", "adm@read,add,control,admin"])
    locked = App(app.player, app.library, s)
    c = await client(locked)
    assert await c.cmd("status") == 'ACK [4@0] {status} you don\'t have permission for "status"\n'
    # the permission check comes before the argument count
    assert await c.cmd("play 1 2 3") == 'ACK [4@0] {play} you don\'t have permission for "play"\n'
    assert (
        await c.cmd("commands")
        == "".join(
            f"command: {n}\n"
            for n in ["binarylimit", "close", "commands", "notcommands", "password", "ping", "tagtypes"]
        )
        + "OK\n"
    )
    assert await c.cmd('password "nope"') == "ACK [3@0] {password} incorrect password\n"
    assert await c.cmd('password "pw"') == "OK\n"
    assert (await c.cmd("status")).startswith("volume: ")
    assert await c.cmd("play") == 'ACK [4@0] {play} you don\'t have permission for "play"\n'
    notcommands = await c.cmd("notcommands")
    assert "command: play\n" in notcommands and "command: status\n" not in notcommands
    assert await c.cmd("password adm") == "OK\n"
    assert await c.cmd("play") == "OK\n"  # control implies player
    # default_permissions and local (Unix socket) permissions
    s2 = dataclasses.replace(s, default_permissions="read", local_permissions="read,add,player,control,admin")
    mixed = App(app.player, app.library, s2)
    tcp, unix = await client(mixed), await client(mixed, local=True)
    assert (await tcp.cmd("status")).startswith("volume: ")
    assert (await tcp.cmd("stop")).startswith("ACK [4@0]")
    assert await unix.cmd("stop") == "OK\n"
    locked.close()
    mixed.close()


async def test_status_fields_in_mpds_order(app: App) -> None:
    c = await client(app)
    await c.cmd("clear")
    st = await c.cmd("status")
    keys = [line.split(":")[0] for line in st.splitlines()[:-1]]
    assert keys == [
        "volume", "repeat", "random", "single", "consume", "partition", "playlist", "playlistlength", "mixrampdb",
        "state",
    ]  # fmt: skip
    await c.cmd("add builtin/01-demo.rtttl", "add builtin/02-scale.rtttl", "play 0")
    app.player.elapsed = 12.3456  # type: ignore[attr-defined]
    st = await c.cmd("status")
    assert "state: play\nsong: 0\nsongid: " in st
    assert "\ntime: 12:60\nelapsed: 12.346\nbitrate: 0\nduration: 60.000\nnextsong: 1\nnextsongid: " in st
    keys = [line.split(":")[0] for line in st.splitlines()[:-1]]
    assert keys[-8:] == ["song", "songid", "time", "elapsed", "bitrate", "duration", "nextsong", "nextsongid"]
    await c.cmd("stop")
    st = await c.cmd("status")
    assert "time:" not in st and "song: 0\n" in st and "nextsong: 1\n" in st
    assert await c.cmd("single oneshot") == "OK\n"
    assert "single: oneshot\n" in await c.cmd("status")
    assert await c.cmd("single x") == "ACK [2@0] {single} Unrecognized single mode, expected 0, 1, or oneshot\n"
    assert await c.cmd("consume oneshot") == "ACK [2@0] {consume} Boolean (0/1) expected: oneshot\n"


async def test_songs_and_queue(app: App) -> None:
    c = await client(app)
    assert await c.cmd("clear", "currentsong") == "OK\nOK\n"
    assert await c.cmd("add builtin/01-demo.rtttl") == "OK\n"
    assert re.fullmatch(r"Id: \d+\nOK\n", await c.cmd("addid tunes/tagged.rtttl"))
    info = await c.cmd("playlistinfo")
    assert info.startswith(
        "file: builtin/01-demo.rtttl\nLast-Modified: 2023-11-14T22:13:20Z\nTitle: Demo\nTime: 60\nduration: 60.000\n"
        "Pos: 0\nId: "
    )
    assert "\nfile: tunes/tagged.rtttl\nLast-Modified: 2023-11-14T22:13:20Z\nTitle: Tagged Tune\nTime: 90\n" in info
    assert await c.cmd("playlist") == "0:file: builtin/01-demo.rtttl\n1:file: tunes/tagged.rtttl\nOK\n"
    assert await c.cmd("add nonexist") == "ACK [50@0] {add} No such directory\n"
    assert await c.cmd("addid x 99") == "ACK [2@0] {addid} Number too large: 99\n"
    assert await c.cmd('add "rtttl:Beep:d=4,o=5,b=120:c,e,g"') == "OK\n"
    assert "file: rtttl:Beep:d=4,o=5,b=120:c,e,g\nTitle: Beep\nTime: 2\n" in await c.cmd("playlistinfo 2")
    assert await c.cmd("playlistinfo 9") == "ACK [2@0] {playlistinfo} Bad song index\n"
    assert await c.cmd("playlistinfo 3") == "OK\n"
    assert await c.cmd("playlistinfo 5:2") == "ACK [2@0] {playlistinfo} Malformed range: 5:2\n"
    assert await c.cmd("delete 9") == "ACK [2@0] {delete} Bad song index\n"
    assert await c.cmd("play 99") == "ACK [2@0] {play} Bad song index\n"
    assert await c.cmd("play -5") == "ACK [2@0] {play} Bad song index\n"
    assert await c.cmd("play abc") == "ACK [2@0] {play} Integer expected: abc\n"
    assert await c.cmd("playid 99") == "ACK [50@0] {playid} No such song\n"
    assert await c.cmd("deleteid 99") == "ACK [50@0] {deleteid} No such song\n"
    assert await c.cmd("seekcur 5") == "ACK [55@0] {seekcur} Not playing\n"
    assert await c.cmd("setvol 200") == "ACK [2@0] {setvol} Number too large: 200\n"
    assert await c.cmd("repeat 2") == "ACK [2@0] {repeat} Boolean (0/1) expected: 2\n"
    assert await c.cmd('play "0"', "currentsong") == (
        "OK\nfile: builtin/01-demo.rtttl\nLast-Modified: 2023-11-14T22:13:20Z\nTitle: Demo\nTime: 60\n"
        f"duration: 60.000\nPos: 0\nId: {app.player.entries()[0].id}\nOK\n"
    )
    version = app.player.status().playlist_version
    await c.cmd("move 2 0")
    changes = await c.cmd(f"plchangesposid {version}")
    assert changes.startswith("cpos: 0\nId: ")
    assert await c.cmd("volume +10", "getvol") == "OK\nvolume: 100\nOK\n"
    assert await c.cmd("volume -30", "getvol") == "OK\nvolume: 70\nOK\n"
    assert await c.cmd("volume +500") == "ACK [2@0] {volume} Number too large: +500\n"
    assert await c.cmd("pause", "status")  # the deprecated toggle
    assert app.player.status().state == "pause"
    await c.cmd("pause")
    assert app.player.status().state == "play"


async def test_tagtypes_mask(app: App) -> None:
    c = await client(app)
    tags = await c.cmd("tagtypes")
    assert tags.startswith("tagtype: Artist\ntagtype: ArtistSort\n") and tags.count("tagtype:") == 30
    assert await c.cmd('tagtypes "clear"', "tagtypes") == "OK\nOK\n"
    assert "Title:" not in await c.cmd("playlistinfo")
    await c.cmd("tagtypes enable Artist AlbumArtist Title Name Composer Performer")
    assert await c.cmd("tagtypes") == (
        "tagtype: Artist\ntagtype: AlbumArtist\ntagtype: Title\ntagtype: Name\ntagtype: Composer\n"
        "tagtype: Performer\nOK\n"
    )
    assert "Title: Demo" in await c.cmd("playlistinfo")
    assert await c.cmd("tagtypes foo") == "ACK [2@0] {tagtypes} Unknown sub command\n"
    assert await c.cmd("tagtypes enable Foo") == "ACK [2@0] {tagtypes} Unknown tag type\n"
    assert await c.cmd("tagtypes enable") == "ACK [2@0] {tagtypes} Not enough arguments\n"


async def test_stored_playlists(app: App) -> None:
    a, b = await client(app), await client(app)
    await b.cmd("idle stored_playlist")
    assert await a.cmd("save one") == "OK\n"
    assert b.take() == "changed: stored_playlist\nOK\n"
    assert await a.cmd("save one") == "ACK [56@0] {save} Playlist already exists\n"
    assert await a.cmd('save "a/b"') == "ACK [2@0] {save} Bad playlist name\n"
    assert await a.cmd("load nope") == "ACK [50@0] {load} No such playlist\n"
    assert await a.cmd("listplaylist nope") == "ACK [50@0] {listplaylist} No such playlist\n"
    assert await a.cmd("listplaylists") == "playlist: one\nLast-Modified: 2023-11-14T22:13:20Z\nOK\n"
    assert (await a.cmd("listplaylist one")).startswith("file: builtin/01-demo.rtttl\n")
    assert "Title: Demo" in await a.cmd("listplaylistinfo one")
    n = len(app.player.entries())
    assert await a.cmd("load one") == "OK\n"
    assert len(app.player.entries()) == 2 * n
    assert await a.cmd("rename one two", "rm two", "rm two") == "OK\nOK\nACK [50@0] {rm} No such playlist\n"
    assert await a.cmd("playlistadd p builtin/02-scale.rtttl", "playlistadd p nope") == (
        "OK\nACK [50@0] {playlistadd} No such directory\n"
    )
    assert await a.cmd("playlistclear p", "listplaylist p") == "OK\nOK\n"


async def test_database(app: App) -> None:
    c = await client(app)
    await c.cmd("save mine")
    root = await c.cmd('lsinfo ""')
    assert root == (
        "directory: builtin\nLast-Modified: 2023-11-14T22:13:20Z\n"
        "directory: tunes\nLast-Modified: 2023-11-14T22:13:20Z\n"
        "playlist: mine\nLast-Modified: 2023-11-14T22:13:20Z\nOK\n"
    )
    assert (await c.cmd("lsinfo builtin")).startswith("file: builtin/01-demo.rtttl\nLast-Modified: ")
    assert await c.cmd("lsinfo nope") == "ACK [50@0] {lsinfo} No such directory\n"
    assert await c.cmd("listall") == (
        "directory: builtin\nfile: builtin/01-demo.rtttl\nfile: builtin/02-scale.rtttl\n"
        "directory: tunes\nfile: tunes/tagged.rtttl\nOK\n"
    )
    assert (await c.cmd("listallinfo tunes")).startswith("directory: tunes\nLast-Modified: ")
    assert (await c.cmd('find title "Tagged Tune"')).startswith("file: tunes/tagged.rtttl\n")
    assert await c.cmd("find title tagged") == "OK\n"
    assert (await c.cmd("search title tagg")).startswith("file: tunes/tagged.rtttl\n")
    assert (await c.cmd('find "(title == \\"Demo\\")"')).startswith("file: builtin/01-demo.rtttl\n")
    assert (await c.cmd('search "(title contains \\"SCAL\\")"')).startswith("file: builtin/02-scale.rtttl\n")
    assert (await c.cmd('find "(!(title == \\"Demo\\"))"')).count("file:") == 2
    assert await c.cmd("find foo bar") == "ACK [2@0] {find} Unknown filter type\n"
    assert await c.cmd("find title") == "ACK [2@0] {find} Incorrect number of filter arguments\n"
    assert await c.cmd('find "(foo == \\"x\\")"') == "ACK [2@0] {find} Unknown filter type: foo\n"
    assert await c.cmd('count title "Demo"') == "songs: 1\nplaytime: 60\nOK\n"
    assert await c.cmd("list title") == "Title: Demo\nTitle: Scale\nTitle: Tagged Tune\nOK\n"
    assert await c.cmd("list album") == "Album: \nOK\n"
    assert await c.cmd("readpicture builtin/01-demo.rtttl 0") == "OK\n"
    assert await c.cmd("albumart builtin/01-demo.rtttl 0") == "ACK [50@0] {albumart} No file exists\n"
    assert await c.cmd("update") == "updating_db: 1\nOK\n"
    assert await c.cmd("idle update") == "changed: update\nOK\n"  # the job started
    assert "updating_db: 1\n" in await c.cmd("status")
    assert await c.cmd("idle update") == ""
    await asyncio.sleep(0.1)
    assert c.take() == "changed: update\nOK\n"  # ... and ended
    assert "updating_db" not in await c.cmd("status")
    assert app.library.rescans == 1  # type: ignore[attr-defined]


async def test_reflection_and_connection(app: App) -> None:
    c = await client(app)
    assert "command: playat\n" in await c.cmd("commands")
    assert await c.cmd("notcommands") == "OK\n"
    assert await c.cmd("urlhandlers") == "handler: beep:\nhandler: rtttl:\nOK\n"
    assert (await c.cmd("decoders")).startswith("plugin: rtttl\nsuffix: rtttl\n")
    assert await c.cmd("outputs") == "outputid: 0\noutputname: buzzer\nplugin: none\noutputenabled: 1\nOK\n"
    assert await c.cmd("replay_gain_status") == "replay_gain_mode: off\nOK\n"
    stats = await c.cmd("stats")
    assert [line.split(":")[0] for line in stats.splitlines()] == [
        "uptime", "playtime", "artists", "albums", "songs", "db_playtime", "db_update", "OK",
    ]  # fmt: skip
    assert "songs: 3\ndb_playtime: 195\n" in stats
    assert await c.cmd("binarylimit 10") == "ACK [2@0] {binarylimit} Value too small\n"
    assert await c.cmd("binarylimit 99999999") == "ACK [2@0] {binarylimit} Number too large: 99999999\n"
    assert await c.cmd("binarylimit 64") == "OK\n"
    assert await c.cmd("close", "ping") == ""
    assert c.closed


async def test_playat_passes_the_wall_clock_instant(app: App) -> None:
    c = await client(app)
    assert await c.cmd("playat 1 1790000000.123456789") == "OK\n"
    assert app.player.played_at[-1] == 1_790_000_000_123_456_789  # type: ignore[attr-defined]
    assert app.player.status().song == 1
    assert await c.cmd("playat 0 soon") == "ACK [2@0] {playat} Float expected: soon\n"
    assert await c.cmd("playat 0 -5") == "ACK [2@0] {playat} Float expected: -5\n"
    assert await c.cmd("playat 99 1790000000") == "ACK [2@0] {playat} Bad song index\n"
    assert await c.cmd("playat 0") == 'ACK [2@0] {playat} wrong number of arguments for "playat"\n'


async def test_handler_bug_becomes_an_ack_not_a_crash(app: App) -> None:
    def boom() -> None:
        raise RuntimeError("kaboom")

    app.player.clear_error = boom  # type: ignore[method-assign]
    c = await client(app)
    assert await c.cmd("clearerror", "ping") == "ACK [5@0] {clearerror} kaboom\nOK\n"
