"""Robustness, in memory: >= 10^5 fuzzed request lines and random byte streams never crash a
session, never leave it answering out of step, and never grow memory past a bound. (The socket
level is in test_mpd_robust.py.)"""

from __future__ import annotations

import gc
import os
import random
import re

from hypothesis import given, settings
from hypothesis import strategies as st
from mpd_doubles import FakeLibrary, FakePlayer, MemoryClient

from pi_appliance.config import MpdSettings
from pi_appliance.mpd.app import App
from pi_appliance.mpd.registry import build_registry
from pi_appliance.mpd.tokenizer import TokenError, quote, strip_line, tokenize

COMMANDS = [c.name for c in build_registry()] + ["noidle", "command_list_begin", "command_list_ok_begin"]
COMMANDS += ["command_list_end"] * 5
ATOMS = ["0", "1", "-1", "2", "99", "1:3", "0:", "5:2", "abc", "", "oneshot", "+5", "-5", "1.5", "1e2",
         "builtin/01-demo.rtttl", "tunes", "builtin", "rtttl:x:d=4:c", "beep:-f 440", "title", "Demo",
         '(title == "Demo")', "player", "mixer", "clear", "enable", "Title", "é", "\\", '"', "'"]  # fmt: skip
LINES = int(os.environ.get("MPD_FUZZ_LINES", "100000"))
REPLY_END = re.compile(r"^(OK|ACK \[\d+@\d+\] \{[a-z_]*\} .*)$")


def fuzz_line(rng: random.Random) -> bytes:
    r = rng.random()
    if r < 0.005:
        return rng.choice([b"", b"Ping", b"GET / HTTP/1.1", b"\x00\xff"])  # closes: counted, then reconnect
    if r < 0.02:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\n", b"")
    words = [rng.choice(COMMANDS)]
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3, 70]) if rng.random() < 0.99 else 0):
        a = rng.choice(ATOMS) if rng.random() < 0.8 else "".join(chr(rng.randrange(1, 0x3000)) for _ in range(5))
        words.append(quote(a) if rng.random() < 0.5 else a)
    line = " ".join(words)
    if rng.random() < 0.01:
        line = line[: rng.randrange(len(line) + 1)] + rng.choice(['"', "\\", "\t", "\r", "'"])
    return line.encode("utf-8", "surrogatepass").replace(b"\n", b" ")


async def test_hundred_thousand_fuzzed_lines_in_memory() -> None:
    lib = FakeLibrary()
    player = FakePlayer(lib)
    await player.start()
    app = App(player, lib, MpdSettings(max_command_list_size=64 * 1024))  # type: ignore[arg-type]
    rng = random.Random(4)
    total = 0
    sessions = 0
    gc.collect()
    base = rss_bytes()
    peak_growth = 0
    pool = [fuzz_line(rng) + b"\n" for _ in range(20_000)]
    c = MemoryClient(app)
    while total < LINES:
        batch = b"".join(rng.choices(pool, k=25))
        await c.send(batch)
        assert not c.task.done() or c.task.exception() is None
        if c.closed:
            await c.eof()
            total += c.session.lines
            sessions += 1
            _check_replies(c.writer.data.decode("utf-8", "surrogateescape"))
            c = MemoryClient(app)
        if len(player.entries()) > 50:  # the queue may grow (bounded by the real player); keep it small here
            player.clear()
        peak_growth = max(peak_growth, rss_bytes() - base)
    await c.eof()
    app.close()
    assert total >= LINES
    assert sessions > 50  # the closing cases were exercised
    assert peak_growth < 32 * 1024 * 1024, peak_growth


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _check_replies(out: str) -> None:
    """What came back is a greeting then well-formed lines: pairs, list_OK, OK or ACK."""
    lines = out.split("\n")
    assert lines[0] == "OK MPD 0.23.5"
    for line in lines[1:-1]:
        assert line == "list_OK" or REPLY_END.match(line) or ": " in line or re.match(r"^\d+:file: ", line), line


async def test_random_byte_streams_in_memory() -> None:
    lib = FakeLibrary()
    player = FakePlayer(lib)
    app = App(player, lib, MpdSettings())  # type: ignore[arg-type]
    rng = random.Random(7)
    for i in range(2000):
        c = MemoryClient(app)
        alphabet = bytes(range(256)) if i % 2 else b'abcdefghijklmnopqrstuvwxyz "\\\n\t0123456789:'
        data = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 600)))
        await c.send(data)
        await c.eof()
        assert c.task.done() and c.task.exception() is None
        assert c.writer.data.startswith(b"OK MPD 0.23.5\n")
    assert not app.sessions
    app.close()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\x00"), max_size=20), max_size=10))
def test_quoted_arguments_round_trip(args: list[str]) -> None:
    line = strip_line("add " + " ".join(quote(a) for a in args))
    word, got = tokenize(line)
    assert (word, got) == ("add", args)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_tokenizer_only_raises_token_errors(text: str) -> None:
    line = strip_line(text)
    if not line or not "a" <= line[0] <= "z":
        return
    try:
        word, args = tokenize(line)
    except TokenError:
        return
    assert word and len(args) < 64
