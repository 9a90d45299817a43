"""Tune parsing throughput over the real-world RTTTL corpus, side by side with the peers.

    .venv/bin/python bench/music.py [--corpus DIR] [--repeat N]

Prints strings/s and notes/s for pi-appliance's parser and, when installed (``pip install -e
.[bench]``), PyPI ``rtttl`` 0.2 and ``ptttl`` 1.2, over the whole corpus and over the strings every
parser accepts, with the ratio to pi-appliance. Best of ``--repeat`` runs; figures to track, not to
assert. The corpus is read where it lies (``../shared/corpus/rtttl``): never copy it here.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pi_appliance import music  # noqa: E402

Parser = Callable[[str], int]  # text -> number of notes; raises on rejection


def load_corpus(directory: Path) -> list[str]:
    out: list[str] = []
    for path in sorted(directory.glob("*.json")):
        for entry in json.loads(path.read_text(encoding="utf-8")):
            out.extend(entry["tracks"])
    return out


def ours(text: str) -> int:
    return len(music.parse_rtttl(text).notes)


def ours_round_trip(text: str) -> int:
    return len(music.parse_rtttl(music.format_rtttl(music.parse_rtttl(text))).notes)


def peers() -> dict[str, Parser]:
    found: dict[str, Parser] = {}
    try:
        import rtttl  # PyPI rtttl 0.2

        found["rtttl 0.2"] = lambda text: len(rtttl.parse_rtttl(text)["notes"])
    except ImportError:
        pass
    try:
        from ptttl.parser import PTTTLParser  # PyPI ptttl 1.2

        parser = PTTTLParser()
        found["ptttl 1.2"] = lambda text: sum(len(track) for track in parser.parse(text).tracks)
    except ImportError:
        pass
    return found


def run_once(parse: Parser, strings: list[str]) -> tuple[int, int, float]:
    """(accepted, notes, seconds) of one pass over ``strings``."""
    gc.collect()
    accepted = notes = 0
    t0 = time.perf_counter()
    for text in strings:
        try:
            notes += parse(text)
            accepted += 1
        except Exception:  # peers raise all sorts; ours only TuneError (tests show it)
            pass
    return accepted, notes, time.perf_counter() - t0


def compare(parsers: dict[str, Parser], strings: list[str], repeat: int) -> list[tuple[str, int, int, float]]:
    """Best of ``repeat`` per parser, the parsers taking turns so that a busy machine hurts all alike."""
    best: dict[str, tuple[int, int, float]] = {}
    for _ in range(repeat):
        for name, parse in parsers.items():
            result = run_once(parse, strings)
            if name not in best or result[2] < best[name][2]:
                best[name] = result
    return [(name, *best[name]) for name in parsers]


def accepts(parse: Parser, text: str) -> bool:
    try:
        parse(text)
    except Exception:
        return False
    return True


def table(title: str, rows: list[tuple[str, int, int, float]], total: int) -> None:
    print(f"\n{title}")
    print(f"  {'parser':<28}{'accepted':>16}{'strings/s':>12}{'notes/s':>12}{'ratio':>8}")
    base = rows[0][3]
    for name, acc, notes, secs in rows:
        share = f"{acc}/{total} {100 * acc / total:.1f}%"
        ratio = f"{secs / base:.2f}" if base > 0 else "-"
        print(f"  {name:<28}{share:>16}{total / secs:>12,.0f}{notes / secs:>12,.0f}{ratio:>8}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus" / "rtttl")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"no corpus at {args.corpus} (give --corpus DIR)", file=sys.stderr)
        return 2
    strings = load_corpus(args.corpus)
    py = sys.version.split()[0]
    print(f"RTTTL corpus: {len(strings)} strings from {args.corpus}; best of {args.repeat} runs; python {py}")
    print("ratio = the parser's time / pi-appliance's time on the same strings (above 1: pi-appliance is faster)")
    others = peers()
    if not others:
        print("(peers not installed: pip install -e '.[bench]' to compare with rtttl and ptttl)")

    parsers: dict[str, Parser] = {"pi-appliance parse_rtttl": ours, **others}
    rows = compare(parsers, strings, args.repeat)
    table("whole corpus (every string, accepted or not)", rows, len(strings))

    common = [s for s in strings if all(accepts(p, s) for p in parsers.values())]
    rows = compare(parsers, common, args.repeat)
    table(f"strings every parser accepts ({len(common)})", rows, len(common))

    accepted = [s for s in strings if accepts(ours, s)]
    rows = compare(
        {"pi-appliance parse_rtttl": ours, "parse+format_rtttl+parse": ours_round_trip}, accepted, args.repeat
    )
    table(f"pi-appliance round trip over the strings it accepts ({len(accepted)})", rows, len(accepted))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
