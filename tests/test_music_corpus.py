"""The real-world corpus (../shared/corpus/rtttl, read in place: its licence forbids copying it here).

Must show: at least 98.5 % of the 11 244 strings accepted; every rejection a TuneError naming a
position inside the string; no other exception type, ever; every accepted tune formats back to
RTTTL that parses to the very same notes.
"""

from __future__ import annotations

import json
from pathlib import Path

from pi_appliance.music import TuneError, format_rtttl, parse_rtttl

FILES = ("picaxe.json", "esc-configurator.json", "esphome.json", "skully-rtttl.json", "community.json")


def corpus_strings(corpus_dir: Path) -> list[str]:
    out: list[str] = []
    for name in FILES:
        path = corpus_dir / name
        assert path.is_file(), f"corpus file missing: {path}"
        for entry in json.loads(path.read_text(encoding="utf-8")):
            out.extend(entry["tracks"])
    return out


def test_corpus_acceptance(corpus_dir: Path) -> None:
    strings = corpus_strings(corpus_dir)
    assert len(strings) == 11_244
    accepted = 0
    rejected: list[tuple[str, TuneError]] = []
    for text in strings:
        try:
            tune = parse_rtttl(text)
        except TuneError as e:  # any other exception type fails the test right here
            rejected.append((text, e))
            continue
        accepted += 1
        assert any(n.freq_hz for n in tune.notes)
        assert parse_rtttl(format_rtttl(tune)).notes == tune.notes
    for text, e in rejected:
        assert isinstance(e.position, int) and 0 <= e.position <= len(text), (text, e)
        assert f"(at {e.position})" in str(e)
    share = accepted / len(strings)
    print(f"\nRTTTL corpus: {accepted}/{len(strings)} accepted ({100 * share:.2f} %), {len(rejected)} rejected")
    assert share >= 0.985


def test_corpus_rejections_are_junk_not_deviations(corpus_dir: Path) -> None:
    """The deviations the research counts (dot before octave, _, e#/b#, h, odd tempos...) all pass:
    what is rejected is truncated or garbled, so each rejection points at something visibly wrong."""
    for text in corpus_strings(corpus_dir):
        try:
            parse_rtttl(text)
        except TuneError as e:
            assert e.position is not None
            bad = text[e.position : e.position + 12]
            if e.token is not None:
                assert bad.replace(" ", "").lower().startswith(e.token.lower()[:1]), (text, e)
