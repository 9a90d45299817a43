"""The pure knock code: matcher, tick pool, authenticated knocks, clock sequences, packets, BPF,
budgets and the spray shield (research knock.md section 5; property numbers in the test names)."""

from __future__ import annotations

import ast
import os
import random
import socket
import struct
from pathlib import Path

import pytest
from test_knock_helpers import KEY, engine, settings, tcp_packet, udp, udp_packet

from pi_appliance import config
from pi_appliance.errors import ConfigError
from pi_appliance.knock import auth
from pi_appliance.knock.engine import Engine
from pi_appliance.knock.matcher import SeqSpec, SequenceMatcher
from pi_appliance.knock.packet import (
    ETH_P_IP,
    ETH_P_IPV6,
    SNAP_AUTH,
    SNAP_HEADERS,
    Hit,
    build_filter,
    parse_l3,
    run_filter,
)
from pi_appliance.knock.pool import PoolSpec, TickPool, ticks_to_tune
from pi_appliance.music.model import Note

SEQ = [21077, 21013, 21042]
SEQ_TABLE = {"name": "door", "ports": [str(p) for p in SEQ], "action": "play", "arg": 3}
POOL = {
    "enabled": True,
    "sources": ["127.0.0.0/8", "10.0.0.0/8"],
    "tone_port": 23000,
    "silence_port": 23001,
    "play_port": 23002,
    "clear_port": 23003,
}


def seq_engine(**kw: object) -> Engine:
    return engine(sequence=[SEQ_TABLE], **kw)


def knock(e: Engine, src: str, ports: list[int], t: int = 1000, step_ms: int = 1, proto: str = "udp") -> list:
    out = []
    for i, p in enumerate(ports):
        out += e.feed(Hit(src, proto, p, 30000 + i), t + i * step_ms, 0)
    return out


# --- sequences ---


def test_sequence_completes_once_with_its_action() -> None:
    e = seq_engine()
    d = knock(e, "10.0.0.1", SEQ)
    assert [(x.kind, x.arg, x.via) for x in d] == [("play", 3, "sequence:door")]
    assert knock(e, "10.0.0.1", SEQ[-1:], t=2000) == []  # the spent knocks do nothing again


def test_sequence_timeout_is_monotonic_milliseconds() -> None:
    e = seq_engine()
    assert knock(e, "10.0.0.1", SEQ, step_ms=1499) != []  # 2998 ms <= 3000
    assert knock(e, "10.0.0.2", SEQ, step_ms=1501) == []  # 3002 ms > 3000


def test_p10_one_spoofed_packet_never_cancels() -> None:
    for extra in (SEQ[2], SEQ[0], SEQ[1] + 5, SEQ[0] - 1):  # a door port out of turn, a tripwire
        e = seq_engine()
        src = "10.0.0.9"
        e.feed(udp(src, SEQ[0], 1), 0, 0)
        e.feed(udp(src, extra, 9999), 1, 0)  # the spoofed one
        e.feed(udp(src, SEQ[1], 2), 2, 0)
        assert [d.kind for d in e.feed(udp(src, SEQ[2], 3), 3, 0)] == ["play"], extra


def test_two_foreign_packets_do_cancel() -> None:
    e = seq_engine()
    src = "10.0.0.9"
    e.feed(udp(src, SEQ[0], 1), 0, 0)
    e.feed(udp(src, SEQ[0] + 1, 8), 1, 0)
    e.feed(udp(src, SEQ[0] + 2, 9), 1, 0)
    e.feed(udp(src, SEQ[1], 2), 2, 0)
    assert e.feed(udp(src, SEQ[2], 3), 3, 0) == []


def test_p11_duplicates_and_retransmits_count_once() -> None:
    e = seq_engine()
    src = "10.0.0.3"
    out = []
    for i, p in enumerate(SEQ):  # every datagram duplicated on the way
        out += e.feed(udp(src, p, 100 + i), 10 + 2 * i, 0)
        out += e.feed(udp(src, p, 100 + i), 11 + 2 * i, 0)
    assert [d.kind for d in out] == ["play"]
    e2 = engine(sequence=[{**SEQ_TABLE, "ports": [f"{p}:tcp" for p in SEQ]}], listener="packet")
    out = []
    for i, p in enumerate(SEQ):  # SYN retransmits (same source port) a second later
        out += e2.feed(Hit(src, "tcp", p, 200 + i), 10 + i, 0)
        out += e2.feed(Hit(src, "tcp", p, 200 + i), 1010 + i, 0)
    assert [d.kind for d in out] == ["play"]


def test_p11_reordered_knocks_are_rejected_deterministically() -> None:
    e = seq_engine()
    assert knock(e, "10.0.0.4", [SEQ[0], SEQ[2], SEQ[1]]) == []
    assert knock(e, "10.0.0.5", [SEQ[1], SEQ[0], SEQ[2]]) == []


def _scan_orders(ports: list[int], n_random: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    orders = [sorted(ports), sorted(ports, reverse=True)]
    for _ in range(n_random):
        o = list(ports)
        rng.shuffle(o)
        orders.append(o)
    return orders


def test_p6_scans_in_every_order_cause_nothing_and_leave_no_harm() -> None:
    """Ascending, descending and 100 random-order scans of 1..65535, UDP and TCP, against plain
    sequences (ascending, descending, mixed) and the pool. The engine is fed what the kernel filter
    lets through (the watched ports, checked against the BPF program in test_bpf_*). In a random
    order of all 65535 ports the watched ones come in a uniformly random order, so shuffling just
    them is the same experiment."""
    doors = [
        {"name": "asc", "ports": ["21010", "21050", "21090"], "action": "play", "arg": 1},
        {"name": "desc", "ports": ["22090", "22050", "22010"], "action": "stop", "arg": 1},
        {"name": "mixed", "ports": ["24077", "24013", "24042"], "action": "next", "arg": 1},
    ]
    for proto in ("udp", "tcp"):
        e = engine(
            sequence=[{**d, "ports": [f"{p}:{proto}" for p in d["ports"]]} for d in doors],
            pool={**POOL, "protocols": [proto]},
            listener="packet",
            actions_per_min=1000,
            actions_per_source_per_min=1000,
        )
        plan = e.plan()
        ranges = plan.udp if proto == "udp" else plan.tcp
        visible = [p for lo, hi in ranges for p in range(lo, hi + 1)]
        assert len(visible) < 1000  # the filter passes only the neighbourhoods
        t = 0
        for n, order in enumerate(_scan_orders(visible, 100, seed=7)):
            src = f"10.1.{n // 250}.{n % 250 + 1}"
            for i, port in enumerate(order):
                t += 1
                assert e.feed(Hit(src, proto, port, 40000 + (i % 20000)), t, 0) == [], (proto, n, port)
            # the same source then knocks for real: the scan left nothing in the way
            t += 10
            got = knock(e, src, [21010, 21050, 21090], t=t, proto=proto)
            assert [d.via for d in got] == ["sequence:asc"]
            t += 10_000
        assert e.counters["pool_play"] == 0


def test_p7_state_is_bounded_lru() -> None:
    e = seq_engine(pool=POOL, max_sources=1024)
    for i in range(65536):
        src = f"10.{i >> 16}.{(i >> 8) & 255}.{i & 255}"
        e.feed(udp(src, SEQ[i % 3], i), i, 0)
        e.feed(udp(src, POOL["tone_port"], i), i, 0)
    sizes = e.state_sizes()
    assert sizes["sequence_sources"] <= 1024 and sizes["pool_sources"] <= 1024
    assert e.matcher.evicted >= 64000 and e.pool is not None and e.pool.evicted >= 64000
    # the newest source still has its state: evicting the oldest is what happened
    assert knock(e, "10.0.255.255", SEQ[1:], t=70000) == []


def test_matcher_eviction_is_o1_least_recently_used() -> None:
    m = SequenceMatcher(tolerance=1, max_sources=16)
    m.set_sequences([SeqSpec("s", ((1, "udp"), (5, "udp")), 1000)])
    for i in range(100):
        m.feed(f"s{i}", (1, "udp"), 1, i)
        m.feed("keep", (1, "udp"), 1000 + i, i)  # "keep" stays recently used
    assert len(m) == 16 and m.evicted == 100 + 1 - 16
    assert m.feed("keep", (5, "udp"), 5, 100) is not None
    assert m.feed("s0", (5, "udp"), 5, 100) is None  # evicted long ago: its first knock is gone


# --- the spray shield and the budgets ---


def test_p5_spoofed_spray_of_every_configured_port_causes_nothing() -> None:
    """10k spoofed sources spraying the door and pool ports at 10k pps for 60 s (virtual time)."""
    e = seq_engine(pool=POOL)
    rng = random.Random(5)
    ports = [*SEQ, 23000, 23001, 23002, 23003]
    srcs = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(10_000)]
    actions = []
    for i in range(600_000):
        actions += e.feed(udp(rng.choice(srcs), rng.choice(ports), rng.randrange(1024, 65536)), i // 10, 0)
    assert actions == []
    assert e.counters["shielded"] > 0  # the spray did complete sequences: the shield held them


def test_shield_lets_a_knock_through_once_the_spray_stops() -> None:
    e = seq_engine()
    for i in range(200):
        e.feed(udp(f"10.9.0.{i + 1}", SEQ[0]), i, 0)
    assert e.shield.active(300)
    assert knock(e, "10.0.0.1", SEQ, t=500) == []
    assert [d.kind for d in knock(e, "10.0.0.1", SEQ, t=20_000)] == ["play"]


def test_p12_action_budget_per_source_and_total() -> None:
    e = seq_engine(actions_per_source_per_min=3, actions_per_min=5)
    n = sum(len(knock(e, "10.0.0.1", SEQ, t=1000 + 200 * i)) for i in range(10))
    assert n == 3 and e.counters["budget_source"] == 7
    n = sum(len(knock(e, f"10.0.1.{i}", SEQ, t=5000 + 200 * i)) for i in range(10))
    assert n == 2 and e.counters["budget_total"] == 8
    assert len(knock(e, "10.0.2.1", SEQ, t=5000 + 60_000)) == 1  # refilled after a minute


# --- the tick pool ---


def pool_feed(p: TickPool, src: str, ports: list[int], proto: str = "udp", t: int = 0) -> list:
    return [p.feed(src, port, proto, 30000 + i, t + i) for i, port in enumerate(ports)]


def test_pool_melody_becomes_the_expected_tune() -> None:
    p = TickPool(PoolSpec())
    T, S, P = 1000, 1001, 1002
    res = pool_feed(p, "a", [T, T, S, T, S, S, T, T, T, P])
    assert res[-1].event == "play" and res[-1].ticks == "TTSTSSTTT"
    tune = ticks_to_tune(res[-1].ticks, 100, 880.0)
    assert tune.notes == (
        Note(880.0, 200_000),
        Note.rest(100_000),
        Note(880.0, 100_000),
        Note.rest(200_000),
        Note(880.0, 300_000),
    )
    assert tune.duration_us == 900_000


def test_p21_pool_needs_min_ticks_and_a_tone() -> None:
    p = TickPool(PoolSpec())
    assert pool_feed(p, "a", [1000, 1001, 1000, 1001, 1002])[-1].event == "short"  # 4 ticks
    assert pool_feed(p, "a", [1001] * 6 + [1002])[-1].event == "short"  # silence only
    assert pool_feed(p, "a", [1000] * 3 + [1003] + [1000] * 4 + [1002])[-1].event == "short"  # cleared
    assert pool_feed(p, "a", [1000] * 5 + [1002])[-1].event == "play"
    assert pool_feed(p, "a", [1000] * 4 + [1000], t=0)[-1].event == "tick"
    assert p.feed("a", 1002, "udp", 1, 10 + 10_001).event == "short"  # session expired meanwhile


def test_p12_pool_bounded_in_ticks_and_play_time() -> None:
    p = TickPool(PoolSpec(max_ticks=20, max_play_ms=1000, tick_ms=100))
    res = pool_feed(p, "a", [1000] * 50 + [1002])
    assert [r.event for r in res].count("full") == 40
    assert len(res[-1].ticks) == 10  # 10 ticks x 100 ms = max_play_ms
    with pytest.raises(ValueError):
        PoolSpec(min_ticks=4)


def test_p21_no_scan_in_any_order_fills_the_pool() -> None:
    """Exhaustive: every order of the pool's 8 (port, protocol) pairs, once each, then with every
    pair probed again (a retrying scanner: each round visits every port once)."""
    import itertools

    pairs = [(port, proto) for port in (1000, 1001, 1002, 1003) for proto in ("udp", "tcp")]
    spec = PoolSpec(protocols=frozenset({"udp", "tcp"}))
    for order in itertools.permutations(pairs):
        p = TickPool(spec)
        for i, (port, proto) in enumerate(order):
            assert p.feed("s", port, proto, 50000 + i, i).event != "play"
    rng = random.Random(3)
    udp_pairs = [(port, "udp") for port in (1000, 1001, 1002, 1003)]
    for _ in range(20000):  # retry rounds, any order within each round, one protocol (socket mode)
        p = TickPool(PoolSpec())
        t = 0
        for _round in range(rng.randrange(2, 6)):
            rnd = udp_pairs[:]
            rng.shuffle(rnd)
            for port, proto in rnd:
                t += 1
                assert p.feed("s", port, proto, 50000, t).event != "play"


def test_p21_pool_off_by_default_and_only_from_its_networks() -> None:
    assert config.Settings().knock.pool.enabled is False
    e = engine()
    assert e.pool is None
    assert knock(e, "127.0.0.1", [1000] * 6 + [1002]) == []
    e = engine(pool={**POOL, "sources": ["192.168.7.0/24", "fd00::/8"]})
    assert knock(e, "192.168.8.1", [23000] * 6 + [23002]) == []
    assert e.counters["pool_refused_source"] == 7
    assert [d.kind for d in knock(e, "192.168.7.20", [23000] * 6 + [23002])] == ["pool"]
    assert [d.kind for d in knock(e, "fd00::5", [23000] * 6 + [23002], t=5000)] == ["pool"]


def test_pool_open_by_knock() -> None:
    e = engine(pool={**POOL, "open_by_knock": True}, sequence=[{**SEQ_TABLE, "action": "open_pool", "arg": 5}])
    melody = [23000] * 6 + [23002]
    assert knock(e, "127.0.0.7", melody) == []
    assert [d.kind for d in knock(e, "127.0.0.7", SEQ, t=2000)] == ["open_pool"]
    assert [d.kind for d in knock(e, "127.0.0.7", melody, t=3000)] == ["pool"]
    assert knock(e, "127.0.0.8", melody, t=3000) == []  # opened for that source only
    assert knock(e, "127.0.0.7", melody, t=8000) == []  # and for 5 s


def test_pool_tripwire_discards() -> None:
    e = engine(pool=POOL)
    knock(e, "127.0.0.7", [23000] * 6)
    e.feed(udp("127.0.0.7", 23004, 1), 100, 0)  # the port next to the pool
    assert knock(e, "127.0.0.7", [23002], t=200) == []
    assert e.counters["pool_tripwire"] == 1


# --- authenticated knocks ---


def auth_engine(**kw: object) -> Engine:
    return engine({"alice": KEY, "bob": bytes(32)}, auth_port=62201, **kw)


def datagram(
    action: str = "play",
    arg: int = 2,
    ts: int = 1_000_000,
    nonce: bytes = b"n" * 16,
    key: bytes = KEY,
    key_id: str = "alice",
) -> bytes:
    return auth.encode(key, key_id, action, arg, ts, nonce)


def test_auth_knock_runs_its_action() -> None:
    e = auth_engine()
    d = e.feed(udp("10.0.0.1", 62201, payload=datagram()), 0, 1_000_000)
    assert [(x.kind, x.arg, x.via) for x in d] == [("play", 2, "auth:alice")]
    assert len(datagram()) == auth.LENGTH == 81


def test_p1_replay_is_refused_and_p2_from_another_source_too() -> None:
    e = auth_engine()
    dg = datagram()
    assert e.feed(udp("10.0.0.1", 62201, payload=dg), 0, 1_000_000)
    assert e.feed(udp("10.0.0.1", 62201, payload=dg), 1000, 1_001_000) == []  # 1 s later
    assert e.feed(udp("10.7.7.7", 62201, payload=dg), 1000, 1_001_000) == []  # from elsewhere
    assert e.feed(udp("10.0.0.1", 62201, payload=dg), 600_000, 1_600_000) == []  # 10 min later
    assert e.counters["auth_replay"] == 2 and e.counters["auth_stale"] == 1


def test_p2_action_ignores_the_source_address() -> None:
    a, b = auth_engine(), auth_engine()
    da = a.feed(udp("10.0.0.1", 62201, payload=datagram()), 0, 1_000_000)
    db = b.feed(udp("172.16.0.9", 62201, payload=datagram()), 0, 1_000_000)
    assert [(d.kind, d.arg) for d in da] == [(d.kind, d.arg) for d in db]


def test_p1_replay_cache_survives_a_restart() -> None:
    e = auth_engine()
    dg = datagram()
    assert e.feed(udp("10.0.0.1", 62201, payload=dg), 0, 1_000_000)
    snap = e.snapshot(1_000_100)
    e2 = auth_engine()
    e2.restore(snap, 1_000_200)
    assert e2.feed(udp("10.0.0.1", 62201, payload=dg), 0, 1_000_300) == []
    assert e2.counters["auth_replay"] == 1
    with pytest.raises(ValueError):
        auth_engine().restore(b'{"version": 99}', 0)


def test_p3_every_single_bit_flip_is_rejected() -> None:
    e = auth_engine()
    dg = datagram()
    for bit in range(len(dg) * 8):
        bad = bytearray(dg)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert e.feed(udp("10.0.0.1", 62201, payload=bytes(bad)), bit, 1_000_000) == [], bit
    assert e.counters["auth_bad_mac"] == len(dg) * 8
    assert e.feed(udp("10.0.0.1", 62201, payload=dg), 10_000, 1_000_000)  # the original still works


def test_p3_mac_compare_is_constant_time() -> None:
    src = Path(auth.__file__).read_text()
    assert "hmac.compare_digest" in src and "== mac" not in src


def test_p4_timestamp_window_and_an_unsynced_clock() -> None:
    e = auth_engine()
    assert e.feed(udp("a", 62201, payload=datagram(ts=1_000_000 + 30_000)), 0, 1_000_000)
    assert e.feed(udp("a", 62201, payload=datagram(ts=1_000_000 - 30_000, nonce=b"m" * 16)), 0, 1_000_000)
    assert e.feed(udp("a", 62201, payload=datagram(ts=1_000_000 + 30_001, nonce=b"o" * 16)), 0, 1_000_000) == []
    assert e.feed(udp("a", 62201, payload=datagram(ts=1_000_000 - 30_001, nonce=b"p" * 16)), 0, 1_000_000) == []
    # a Pi without RTC before NTP: its clock says 1970, every time-mode knock is refused
    assert e.feed(udp("a", 62201, payload=datagram(ts=1_763_900_000_000, nonce=b"q" * 16)), 0, 5_000) == []
    assert e.counters["auth_stale"] == 3


def test_auth_fields_checked_after_the_mac() -> None:
    e = auth_engine()
    # right key, wrong id: refused (the id must name the key that verified)
    assert e.feed(udp("a", 62201, payload=datagram(key_id="bob")), 0, 1_000_000) == []
    assert e.counters["auth_bad_key-id"] == 1
    assert e.feed(udp("a", 62201, payload=datagram(key=bytes(32), key_id="bob")), 0, 1_000_000)
    body = auth.BODY.pack(b"PAK", 1, b"alice".ljust(16, b"\0"), 1_000_000, b"z" * 16, 9, 0)
    import hmac as _hmac

    odd = body + _hmac.digest(KEY, body, "sha256")
    assert e.feed(udp("a", 62201, payload=odd), 0, 1_000_000) == []
    assert e.counters["auth_bad_action"] == 1


def test_replay_cache_full_fails_closed() -> None:
    e = auth_engine(replay_cache_max=1024, actions_per_min=10_000, actions_per_source_per_min=10_000)
    ok = 0
    for i in range(1100):
        ok += len(e.feed(udp("a", 62201, payload=datagram(nonce=i.to_bytes(16, "big"))), i * 10, 1_000_000))
    assert ok == 1024 and e.counters["auth_cache_full"] == 76


# --- clock-derived sequences ---


def clock_engine(**kw: object) -> Engine:
    table = {
        "name": "tick",
        "key_file": "unused",
        "length": 3,
        "window_s": 30,
        "skew_windows": 1,
        "action": "next",
        "arg": 1,
    }
    return Engine(settings(clock_sequence=[table], **kw), {}, {"tick": KEY})


def test_clock_sequence_each_window_used_once_with_skew() -> None:
    e = clock_engine()
    now = 1_800_000_000_000
    e.tick(now)
    w = now // 30_000
    ports = auth.derive_ports(KEY, "tick", w, 3, 40000, 40999, 3)
    assert [d.via for d in knock(e, "10.0.0.1", list(ports))] == ["clock:tick"]
    assert knock(e, "10.0.0.2", list(ports), t=5000) == []  # used: not again, from anywhere
    prev = auth.derive_ports(KEY, "tick", w - 1, 3, 40000, 40999, 3)
    assert knock(e, "10.0.0.1", list(prev), t=9000) == []  # an older window died with it
    nxt = auth.derive_ports(KEY, "tick", w + 1, 3, 40000, 40999, 3)
    assert [d.via for d in knock(e, "10.0.0.1", list(nxt), t=12000)] == ["clock:tick"]  # skew: one ahead
    far = auth.derive_ports(KEY, "tick", w + 3, 3, 40000, 40999, 3)
    assert knock(e, "10.0.0.1", list(far), t=15000) == []  # outside the skew


def test_clock_sequence_use_survives_restart() -> None:
    e = clock_engine()
    now = 1_800_000_000_000
    e.tick(now)
    ports = auth.derive_ports(KEY, "tick", now // 30_000, 3, 40000, 40999, 3)
    assert knock(e, "10.0.0.1", list(ports))
    e2 = clock_engine()
    e2.restore(e.snapshot(now), now)
    assert knock(e2, "10.0.0.1", list(ports)) == []


def test_clock_ports_are_spread_and_change() -> None:
    seen = set()
    for w in range(200):
        ports = auth.derive_ports(KEY, "x", w, 4, 40000, 40999, 3)
        assert len(set(ports)) == 4 and all(40000 <= p <= 40999 for p in ports)
        assert min(abs(a - b) for i, a in enumerate(ports) for b in ports[i + 1 :]) >= 3
        seen.add(ports)
    assert len(seen) == 200


# --- packets and the kernel filter ---


def test_parse_v4_udp_tcp_and_refusals() -> None:
    h = parse_l3(udp_packet("127.1.2.3", 5000, 4000, b"hello"), ETH_P_IP)
    assert h == Hit("127.1.2.3", "udp", 5000, 4000, b"hello")
    assert parse_l3(tcp_packet("127.1.2.3", 5001, 4001), ETH_P_IP) == Hit("127.1.2.3", "tcp", 5001, 4001)
    assert parse_l3(tcp_packet("127.1.2.3", 5001, 4001, flags=0x12), ETH_P_IP) is None  # SYN-ACK
    assert parse_l3(tcp_packet("127.1.2.3", 5001, 4001, flags=0x10), ETH_P_IP) is None  # ACK
    frag = bytearray(udp_packet("127.1.2.3", 5000))
    frag[6:8] = struct.pack("!H", 0x2000)  # MF
    assert parse_l3(bytes(frag), ETH_P_IP) is None
    pkt = udp_packet("127.1.2.3", 5000)
    for cut in range(len(pkt)):
        assert parse_l3(pkt[:cut], ETH_P_IP) is None or cut >= 28


def v6_packet(nh: int, l4: bytes) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(l4),
            nh,
            64,
            socket.inet_pton(socket.AF_INET6, "fd00::1"),
            socket.inet_pton(socket.AF_INET6, "::1"),
        )
        + l4
    )


def test_parse_v6_and_extension_headers_ignored() -> None:
    l4 = struct.pack("!HHHH", 4000, 5000, 9, 0) + b"x"
    assert parse_l3(v6_packet(17, l4), ETH_P_IPV6) == Hit("fd00::1", "udp", 5000, 4000, b"x")
    hop = bytes([17, 0, 0, 0, 0, 0, 0, 0])
    assert parse_l3(v6_packet(0, hop + l4), ETH_P_IPV6) is None


def test_bpf_program_passes_only_knocks() -> None:
    prog = build_filter([(5000, 5000), (6000, 6010)], [(7000, 7000)], auth_port=62201)
    assert run_filter(prog, udp_packet("127.0.0.5", 5000), ETH_P_IP) == SNAP_HEADERS
    assert run_filter(prog, udp_packet("127.0.0.5", 6005), ETH_P_IP) == SNAP_HEADERS
    assert run_filter(prog, udp_packet("127.0.0.5", 62201), ETH_P_IP) == SNAP_AUTH
    assert run_filter(prog, udp_packet("127.0.0.5", 6011), ETH_P_IP) == 0
    assert run_filter(prog, udp_packet("127.0.0.5", 7000), ETH_P_IP) == 0  # 7000 is TCP only
    assert run_filter(prog, tcp_packet("127.0.0.5", 7000), ETH_P_IP) == SNAP_HEADERS
    assert run_filter(prog, tcp_packet("127.0.0.5", 7000, flags=0x12), ETH_P_IP) == 0
    assert run_filter(prog, udp_packet("127.0.0.5", 5000), ETH_P_IP, pkttype=4) == 0  # outgoing copy
    frag = bytearray(udp_packet("127.0.0.5", 5000))
    frag[6:8] = struct.pack("!H", 0x0001)
    assert run_filter(prog, bytes(frag), ETH_P_IP) == 0
    l4 = struct.pack("!HHHH", 4000, 5000, 9, 0) + b"x"
    assert run_filter(prog, v6_packet(17, l4), ETH_P_IPV6) == SNAP_HEADERS
    assert run_filter(prog, v6_packet(0, bytes([17, 0, 0, 0, 0, 0, 0, 0]) + l4), ETH_P_IPV6) == 0
    assert run_filter(prog, b"\x00" * 40, 0x0806) == 0  # ARP


def test_bpf_matches_the_engine_plan_on_every_port() -> None:
    e = engine({"alice": KEY}, sequence=[SEQ_TABLE], pool=POOL, listener="packet", auth_port=62201)
    plan = e.plan()
    prog = build_filter(plan.udp, plan.tcp, plan.auth_port)
    watched = e._doors | e._guard | {(62201, "udp")}
    for port in range(1, 65536):
        passed = run_filter(prog, udp_packet("127.0.0.5", port), ETH_P_IP) > 0
        assert passed == ((port, "udp") in watched), port


# --- fuzz: >= 10^5 datagrams, no exception escapes (property 13) ---


def test_p13_fuzz_engine_and_parser() -> None:
    e = engine({"alice": KEY}, auth_port=62201, sequence=[SEQ_TABLE], pool=POOL, clock_sequence=[], listener="packet")
    rng = random.Random(13)
    valid = datagram()
    ports = [62201, *SEQ, 23000, 23001, 23002, 23003, 21078, 1, 65535]
    sizes = [0, 1, 19, 20, 27, 28, 39, 40, 47, 48, 80, 81, 82, 100, 1500]
    for i in range(120_000):
        kind = i % 4
        if kind == 0:  # random payloads to the auth port, around the right length
            n = rng.choice([0, 1, 80, 81, 82, rng.randrange(0, 200)])
            payload = rng.randbytes(n)
            e.feed(Hit("10.0.0.1", "udp", 62201, rng.randrange(65536), payload), i, 1_000_000)
        elif kind == 1:  # mutations of a valid knock
            b = bytearray(valid)
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            e.feed(Hit("10.0.0.1", "udp", 62201, 1, bytes(b[: rng.randrange(70, 82)])), i, 1_000_000)
        elif kind == 2:  # raw bytes to the packet parser, v4 and v6, then into the engine
            base = bytearray(
                rng.choice(
                    [
                        udp_packet("127.0.0.9", rng.choice(ports)),
                        tcp_packet("127.0.0.9", 5),
                        v6_packet(rng.choice([0, 6, 17, 43, 44, 60]), rng.randbytes(20)),
                    ]
                )
            )
            for _ in range(rng.randrange(0, 4)):
                if base:
                    base[rng.randrange(len(base))] = rng.randrange(256)
            data = bytes(base[: rng.choice([*sizes, len(base)])])
            h = parse_l3(data, rng.choice([ETH_P_IP, ETH_P_IPV6]))
            if h is not None:
                e.feed(h, i, 1_000_000)
        else:  # random knocks from random sources
            src = rng.choice(["10.0.0.1", "::1", "fe80::1%lo", "not-an-ip", ""])
            e.feed(Hit(src, rng.choice(["udp", "tcp"]), rng.choice(ports), rng.randrange(65536), b""), i, 0)
    assert e.counters["packets"] > 90_000
    big = Hit("10.0.0.1", "udp", 62201, 1, os.urandom(65507))
    assert e.feed(big, 0, 1_000_000) == []


# --- no shell, anywhere (property 14) ---


def test_p14_no_shell_and_no_process_spawning_in_the_knock_package() -> None:
    pkg = Path(auth.__file__).parent
    banned_modules = {"subprocess", "pty", "shlex"}
    banned_calls = {
        "system",
        "popen",
        "execv",
        "execve",
        "execvp",
        "execl",
        "spawnv",
        "spawnl",
        "eval",
        "exec",
        "fork",
        "posix_spawn",
    }
    for path in pkg.glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                assert not banned_modules & {str(n).split(".")[0] for n in names}, path
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
                assert name not in banned_calls, f"{path.name}: {name}"


# --- configuration (errors name file and key) ---


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ("[knock]\nlistener = 'pcap'\n", "knock.listener", "socket or packet"),
        ("[[knock.sequence]]\nname = 'a'\nports = ['7000:sctp']\n", "knock.sequence[0].ports", "port[:tcp|udp]"),
        ("[[knock.sequence]]\nname = 'a'\nports = ['7000', '7000']\n", "knock.sequence[0].ports", "retransmit"),
        ("[[knock.sequence]]\nname = 'a'\nports = ['7000']\naction = 'shell'\n", "knock.sequence[0].action", "one of"),
        ("[[knock.sequence]]\nname = 'a'\nports = ['7000:tcp']\n", "knock.listener", "TCP knocks"),
        ("[[knock.sequence]]\nname = 'a'\nports = ['7000', '7001']\n", "knock.sequence[0].ports", "closer"),
        ("[knock.pool]\nenabled = true\n", "knock.pool.sources", "networks"),
        ("[knock.pool]\nsources = ['x']\n", "knock.pool.sources[0]", "not a network"),
        ("[knock.pool]\nmin_ticks = 2\n", "knock.pool.min_ticks", "at least 5"),
        ("[knock]\nenabled = true\n", "knock.key", "[[knock.key]]"),
        ("[[knock.key]]\nid = 'a'\n", "knock.key[0]", "file"),
        ("[knock]\nauth_window_s = 60\n", "knock.auth_window_s", "1..30"),
    ],
)
def test_knock_config_errors_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    p = tmp_path / "config.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.load(p)
    assert exc.value.path == str(p) and exc.value.key == key, str(exc.value)
    assert fragment in exc.value.message


def test_knock_config_full_example_loads(tmp_path: Path) -> None:
    p = tmp_path / "config.toml"
    p.write_text(
        """
[knock]
enabled = true
listener = "packet"
[[knock.key]]
id = "laptop"
file = "/etc/pi-appliance/knock/laptop.key"
[[knock.sequence]]
name = "stop"
ports = ["7000", "7100:tcp", "7050"]
action = "stop"
[[knock.clock_sequence]]
name = "tick"
key_file = "/etc/pi-appliance/knock/tick.key"
[knock.pool]
enabled = true
sources = ["192.168.1.0/24"]
protocols = ["udp", "tcp"]
"""
    )
    s = config.load(p).knock
    assert s.sequence[0].ports == ["7000", "7100:tcp", "7050"] and s.clock_sequence[0].window_s == 30
    assert s.pool.sources == ["192.168.1.0/24"] and s.key[0].id == "laptop"


# --- the player adapter the daemon hands over ---


class _Queue:
    """The player's queue API as pi_appliance/player.py pins it (entries, add_tune, play, delete_id...)."""

    def __init__(self) -> None:
        from pi_appliance.player import QueueEntry

        self.QueueEntry = QueueEntry
        self.items: list = []
        self.log: list = []
        self.next_id = 1

    def entries(self) -> list:
        return list(self.items)

    def add_tune(self, tune, uri, pos=None) -> int:  # type: ignore[no-untyped-def]
        e = self.QueueEntry(self.next_id, uri, tune.title, tune)
        self.next_id += 1
        self.items.append(e)
        return e.id

    def delete_id(self, songid: int) -> None:
        self.items = [e for e in self.items if e.id != songid]

    async def play(self, pos: int | None = None, *, at_ns: int | None = None) -> None:
        self.log.append(("play", pos, self.items[pos].id if pos is not None else None))

    async def stop(self) -> None:
        self.log.append(("stop",))

    async def next(self) -> None:
        self.log.append(("next",))

    async def set_volume(self, volume: int) -> None:
        self.log.append(("volume", volume))


async def test_player_actions_map_to_the_player_api() -> None:
    from pi_appliance.knock.actions import KnockActions, PlayerActions

    q = _Queue()
    a = PlayerActions(q)
    assert isinstance(a, KnockActions)
    tune = ticks_to_tune("TTSTTTTT", 100, 880.0)
    for _ in range(3):
        await a.play_tune(tune, "knock pool (10.0.0.1)")
    assert len(q.items) == 1 and q.items[0].title == "knock pool (10.0.0.1)" and q.items[0].uri == "knock:pool"
    assert q.log == [("play", 0, 1), ("play", 0, 2), ("play", 0, 3)]
    await a.play(1)  # 1-based, as pictl play 1
    assert q.log[-1] == ("play", 0, 3)
    with pytest.raises(ValueError, match="no tune 2"):
        await a.play(2)
    await a.stop()
    await a.next()
    await a.volume(30)
    assert q.log[-3:] == [("stop",), ("next",), ("volume", 30)]
