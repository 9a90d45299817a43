"""Depth 1: the tokenizer, the argument converters and the command table, alone."""

from __future__ import annotations

import pytest

from pi_appliance.mpd.errors import Ack, MpdError
from pi_appliance.mpd.registry import (
    ALL_PERMS,
    BOOL,
    FLOAT,
    INT,
    RANGE,
    UINT,
    Perm,
    Registry,
    Section,
    bounded_uint,
    build_registry,
    opt,
    parse_permissions,
    rest,
)
from pi_appliance.mpd.tokenizer import MAX_ARGS, TokenError, quote, strip_line, tokenize


@pytest.mark.parametrize(
    ("line", "word", "args"),
    [
        ("ping", "ping", []),
        ("play 0", "play", ["0"]),
        ('play "0"', "play", ["0"]),
        ("add\tbeep_b.wav", "add", ["beep_b.wav"]),
        ('add "sub/beep\\ c.wav"', "add", ["sub/beep c.wav"]),
        ('find "(file == \\"x\\")"', "find", ['(file == "x")']),
        ('ping "\\a"', "ping", ["a"]),
        ('idle "database"  mixer', "idle", ["database", "mixer"]),
        ('add ""', "add", [""]),
        ("setvol é", "setvol", ["é"]),
        ("p_ing1", "p_ing1", []),
        ("pIng", "pIng", []),
        ('tagtypes "clear"', "tagtypes", ["clear"]),
        ('a "x"\x01y', "a", ["x", "y"]),
    ],
)
def test_tokenize(line: str, word: str, args: list[str]) -> None:
    assert tokenize(line) == (word, args)


@pytest.mark.parametrize(
    ("line", "message", "fatal"),
    [
        ('ping"x"', "Invalid word character", True),
        ("pi-ng", "Invalid word character", True),
        ("ping\\x", "Invalid word character", True),
        ("1ping", "Letter expected", True),
        ('ping x"y', "Invalid unquoted character", False),
        ("add 'x'", "Invalid unquoted character", False),
        ("ping x'", "Invalid unquoted character", False),
        ('ping "x', "Missing closing '\"'", False),
        ('ping "x\\"', "Missing closing '\"'", False),
        ('ping "x"y', "Space expected after closing '\"'", False),
    ],
)
def test_tokenize_errors(line: str, message: str, fatal: bool) -> None:
    with pytest.raises(TokenError) as e:
        tokenize(line)
    assert e.value.message == message
    assert e.value.fatal is fatal


def test_argument_limit() -> None:
    assert len(tokenize("x" + " a" * (MAX_ARGS - 1))[1]) == MAX_ARGS - 1
    for line in ("x" + " a" * MAX_ARGS, "x" + ' "a"' * MAX_ARGS, "x" + " a" * MAX_ARGS + ' "bad'):
        with pytest.raises(TokenError) as e:
            tokenize(line)
        assert e.value.too_many and e.value.message == "Too many arguments"


def test_strip_line_and_quote_round_trip() -> None:
    assert strip_line("ping\r") == "ping"
    assert strip_line("ping   \t") == "ping"
    assert strip_line("ping\0garbage") == "ping"
    for arg in ['a"b', "c\\d", "", "sp ace", "é\t"]:
        assert tokenize("add " + quote(arg)) == ("add", [arg])


def _ack(fn, text):  # type: ignore[no-untyped-def]
    with pytest.raises(MpdError) as e:
        fn(text)
    assert e.value.code == Ack.ARG
    return e.value.message


def test_converters_accept_what_mpd_accepts() -> None:
    assert INT("5") == 5 and INT("-1") == -1 and INT("+3") == 3 and INT(" 7") == 7
    assert UINT("0") == 0 and bounded_uint(100)("100") == 100
    assert BOOL("1") is True and BOOL("0") is False and BOOL("01") is True
    assert FLOAT("1.5") == 1.5 and FLOAT("+5") == 5.0 and FLOAT("1e2") == 100.0 and FLOAT("-.5") == -0.5
    assert RANGE("3") == (3, 4) and RANGE("0:") == (0, None) and RANGE("1:3") == (1, 3) and RANGE("-1") == (0, None)


def test_converters_refuse_with_mpds_texts() -> None:
    assert _ack(INT, "abc") == "Integer expected: abc"
    assert _ack(INT, "1.5") == "Integer expected: 1.5"
    assert _ack(INT, "0x1") == "Integer expected: 0x1"
    assert _ack(INT, "") == "Integer expected: "
    assert _ack(bounded_uint(100), "200") == "Number too large: 200"
    assert _ack(bounded_uint(100), "-1") == "Number too large: -1"
    assert _ack(BOOL, "2") == "Boolean (0/1) expected: 2"
    assert _ack(BOOL, "oneshot") == "Boolean (0/1) expected: oneshot"
    assert _ack(FLOAT, "abc") == "Float expected: abc"
    assert _ack(FLOAT, "+1x") == "Float expected: +1x"
    assert _ack(FLOAT, "nan") == "Float expected: nan"
    assert _ack(RANGE, "5:2") == "Malformed range: 5:2"
    assert _ack(RANGE, "0:-1x") == "Integer or range expected: 0:-1x"
    assert _ack(RANGE, "-5") == "Number is negative: -5"


def test_permissions() -> None:
    assert parse_permissions("read,add") == Perm.READ | Perm.ADD
    assert parse_permissions("control") == Perm.CONTROL | Perm.PLAYER  # control implies player
    assert parse_permissions("read,add,player,control,admin") == ALL_PERMS
    with pytest.raises(ValueError, match="unknown permission"):
        parse_permissions("read,root")


def test_registry_checks_permission_before_argument_count() -> None:
    reg = build_registry()
    play = reg.lookup("play")
    with pytest.raises(MpdError) as e:
        play.check(Perm.READ, 5)
    assert (e.value.code, e.value.message) == (Ack.PERMISSION, 'you don\'t have permission for "play"')
    with pytest.raises(MpdError) as e:
        play.check(ALL_PERMS, 2)
    assert e.value.message == 'too many arguments for "play"'
    with pytest.raises(MpdError) as e:
        reg.lookup("status").check(ALL_PERMS, 1)
    assert e.value.message == 'wrong number of arguments for "status"'
    with pytest.raises(MpdError) as e:
        reg.lookup("seek").check(ALL_PERMS, 1)
    assert e.value.message == 'wrong number of arguments for "seek"'
    with pytest.raises(MpdError) as e:
        reg.lookup("prio").check(ALL_PERMS, 1)
    assert e.value.message == 'too few arguments for "prio"'
    with pytest.raises(MpdError) as e:
        reg.lookup("foo")
    assert (e.value.code, e.value.message, e.value.command) == (Ack.UNKNOWN, 'unknown command "foo"', "")


def test_registry_table_is_sorted_and_complete() -> None:
    reg = build_registry()
    names = [c.name for c in reg]
    assert names == sorted(names)
    # the command set, every one present
    wanted = """status currentsong playlistinfo plchanges plchangesposid playlist stats outputs decoders commands
    notcommands tagtypes urlhandlers lsinfo listall listallinfo find search listplaylists listplaylist
    listplaylistinfo load save rm rename playlistadd playlistclear update readpicture albumart getvol setvol
    volume replay_gain_status ping close binarylimit add addid delete deleteid move moveid swap swapid clear
    shuffle prio prioid play playid stop pause next previous seek seekid seekcur repeat random single consume
    clearerror idle password playat""".split()  # noqa: SIM905
    assert set(wanted) <= set(names)
    assert "noidle" not in names and "command_list_begin" not in names
    # permissions as MPD's table has them
    assert reg.lookup("status").permission == Perm.READ
    assert reg.lookup("idle").permission == Perm.READ
    assert reg.lookup("ping").permission == Perm.NONE
    assert reg.lookup("add").permission == Perm.ADD
    assert reg.lookup("save").permission == Perm.CONTROL
    assert reg.lookup("playat").permission == Perm.PLAYER
    assert reg.allowed(Perm.NONE) == ["binarylimit", "close", "commands", "notcommands", "password", "ping", "tagtypes"]
    assert set(reg.allowed(Perm.READ)) | set(reg.denied(Perm.READ)) == set(names)


def test_section_arguments_and_duplicates() -> None:
    sec = Section("t")

    @sec.command("a", Perm.NONE, INT, opt(BOOL), rest(UINT))
    def a(conn, x, y=None, z=None):  # type: ignore[no-untyped-def]
        return x, y, z

    cmd = sec.commands[0]
    assert (cmd.min_args, cmd.max_args) == (1, -1)
    assert cmd.convert(["1", "0", "5", "6"]) == [1, False, [5, 6]]
    assert cmd.convert(["1"]) == [1]
    with pytest.raises(ValueError, match="twice"):
        Registry([sec, sec])
