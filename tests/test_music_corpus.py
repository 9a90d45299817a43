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


def test_corpus_rejection_positions_point_at_the_token(corpus_dir: Path) -> None:
    """Each rejection's position is where its token starts in the original string (whitespace and
    all), so a user can find the bad spot; and the rejected token is shown in the message."""
    pointed = 0
    for text in corpus_strings(corpus_dir):
        try:
            parse_rtttl(text)
        except TuneError as e:
            assert e.position is not None
            if e.token is not None:
                rest = "".join(text[e.position : e.position + 4 * len(e.token) + 8].split())
                assert rest.startswith(e.token), (text, e)
                assert repr(e.token) in e.message or e.token in e.message
                pointed += 1
    assert pointed >= 100  # nearly every rejection is a bad token, not a whole-string problem
