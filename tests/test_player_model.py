"""Any sequence of commands, valid or not, leaves the player consistent (400 seeded random runs).

After every step: the play order is a permutation of the queue's ids; positions and ids agree; the
current song exists (or there is none); a stopped player has no elapsed time; every entry's version
is at most the queue's; ``status`` never raises; errors raised are only the player's own. At the
end the saved state restores into a player with the same queue and modes.
"""

from __future__ import annotations

import asyncio
import random

from fakes import FakeLibrary, FakeOutput, VirtualClock, fake_parse_inline, settle, tune

from pi_appliance.errors import ApplianceError
from pi_appliance.player import Player, PlayState
from pi_appliance.state import decode, encode

LIB = {f"tunes/t{i}.rtttl": tune(f"T{i}", 0.2 + i / 10) for i in range(5)}

URIS = [*sorted(LIB), "rtttl:x:d=4:c", "nope", "rtttl:"]


NAMES = [
    "add",
    "add",
    "add",
    "delete",
    "delete_id",
    "move",
    "move_id",
    "swap",
    "swap_id",
    "clear",
    "shuffle",
    "prio",
    "prio_id",
    "play",
    "play",
    "play_id",
    "pause",
    "stop",
    "next",
    "previous",
    "seek",
    "seek_id",
    "seek_cur",
    "set_volume",
    "set_repeat",
    "set_random",
    "set_single",
    "set_consume",
    "time",
    "time",
    "fail",
    "clear_error",
]


def random_op(rng: random.Random) -> tuple:
    """One command with arguments that are mostly valid, sometimes not."""
    i = lambda: rng.randint(-1, 5)  # noqa: E731
    maybe = lambda f: None if rng.random() < 0.3 else f()  # noqa: E731
    name = rng.choice(NAMES)
    args: dict[str, tuple] = {
        "add": (rng.choice(URIS), maybe(i)),
        "delete": (i(), maybe(i)),
        "delete_id": (i(),),
        "move": (i(), maybe(i), i()),
        "move_id": (i(), i()),
        "swap": (i(), i()),
        "swap_id": (i(), i()),
        "shuffle": (maybe(i), maybe(i)),
        "prio": (rng.choice([0, 1, 5, 255, 256]), i(), i()),
        "prio_id": (rng.choice([0, 1, 5, 255]), i()),
        "play": (maybe(i),),
        "play_id": (maybe(i),),
        "pause": (rng.choice([None, True, False]),),
        "seek": (i(), rng.uniform(-0.5, 3)),
        "seek_id": (i(), rng.uniform(0, 3)),
        "seek_cur": (rng.uniform(-2, 3), rng.random() < 0.5),
        "set_volume": (rng.randint(-5, 105),),
        "set_repeat": (rng.random() < 0.5,),
        "set_random": (rng.random() < 0.5,),
        "set_single": (rng.choice(["0", "1", "oneshot", "2"]),),
        "set_consume": (rng.choice(["0", "1", "oneshot", "x"]),),
        "time": (rng.uniform(0, 1.5),),
    }
    return (name, *args.get(name, ()))


def check(p: Player) -> None:
    ents = p.entries()
    ids = [e.id for e in ents]
    assert len(set(ids)) == len(ids)
    assert sorted(p._order) == sorted(ids)
    for i, e in enumerate(ents):
        assert p._position(e.id) == i
        assert 0 <= e.version <= p.version
    st_ = p.status()
    assert st_.playlist_length == len(ents)
    if st_.songid is not None:
        assert ents[st_.song].id == st_.songid
    else:
        assert st_.state is PlayState.STOP
    if st_.state is PlayState.STOP:
        assert st_.elapsed_s is None
    else:
        assert 0 <= st_.elapsed_s <= st_.duration_s
    if st_.nextsongid is not None:
        assert ents[st_.nextsong].id == st_.nextsongid


async def run(seq: list[tuple], seed: int) -> None:
    clock = VirtualClock()
    out = FakeOutput(clock)
    p = Player(out, FakeLibrary(LIB), clock=clock, rng=random.Random(seed), parse_inline=fake_parse_inline)
    await p.start()
    ids = lambda k: p.entries()[k % len(p.entries())].id if p.entries() and k >= 0 else 1000 + k  # noqa: E731
    for op in seq:
        name, *args = op
        try:
            if name == "time":
                steps = int(args[0] / 0.05)
                for _ in range(steps):
                    out.advance(0.05)
                    await settle(5)
            elif name == "fail":
                out.fail("boom")
            elif name in ("delete_id", "play_id", "seek_id", "move_id"):
                a = [ids(args[0]) if args[0] is not None else None, *args[1:]]
                r = getattr(p, name)(*a)
                if asyncio.iscoroutine(r):
                    await r
            elif name == "swap_id":
                p.swap_id(ids(args[0]), ids(args[1]))
            elif name == "prio":
                p.prio(args[0], [(args[1], args[2])])
            elif name == "prio_id":
                p.prio_id(args[0], [ids(args[1])])
            else:
                r = getattr(p, name)(*args)
                if asyncio.iscoroutine(r):
                    await r
        except ApplianceError:
            pass
        await settle(5)
        check(p)
    # what is saved comes back
    saved = p.snapshot()
    assert decode(encode(saved)) == saved
    q = Player(FakeOutput(VirtualClock()), FakeLibrary(LIB), clock=clock, parse_inline=fake_parse_inline)
    q._restore(saved)
    assert [(e.uri, e.prio) for e in q.entries()] == [(e.uri, e.prio) for e in p.entries()]
    assert q.status().song == (p.status().song if p.status().song is not None else None)
    check(q)


def test_any_command_sequence_keeps_the_player_consistent():
    for seed in range(400):
        rng = random.Random(seed)
        seq = [random_op(rng) for _ in range(60)]
        try:
            asyncio.run(run(seq, seed))
        except BaseException as e:
            raise AssertionError(f"seed {seed}: {seq}") from e
