"""The differential test: the same mpc and raw-protocol scripts against Debian's mpd (WAV
stand-ins for the tunes) and against our daemon; outputs compared after masking what must differ
(times, ids, file suffixes, the audio format, the output's name and plugin). Also ours against
the goldens captured from mpd 0.23.12 (tests/golden/)."""

from __future__ import annotations

import difflib
import re
import subprocess
from pathlib import Path

import pytest
from conftest import need_program
from mpd_daemon import start_daemon
from mpd_transcripts import (
    GOLDEN,
    WIRE_RACES,
    RealMpd,
    library_tunes,
    mpc_steps,
    normalize,
    raw_scenarios,
    run_mpc,
    run_raw,
    standin_uri,
)

pytestmark = pytest.mark.slow


def _diff(name: str, a: str, b: str) -> list[str]:
    return list(difflib.unified_diff(normalize(a), normalize(b), f"mpd/{name}", f"ours/{name}", lineterm="", n=2))


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    need_program("mpd")
    need_program("mpc")
    tmp = tmp_path_factory.mktemp("diff")
    ours = start_daemon(tmp / "ours")
    tunes = library_tunes(tmp / "lib")
    # the same starting point: our first start fills the queue with the built-ins, mpd starts empty
    subprocess.run(["mpc", "-p", str(ours.port), "-q", "clear"], check=True)
    outputs = subprocess.run(["mpc", "-p", str(ours.port), "outputs"], capture_output=True, text=True, check=True)
    name = re.match(r"Output 1 \((.*)\) is enabled", outputs.stdout).group(1)  # type: ignore[union-attr]
    real = RealMpd(tmp / "mpd", tunes, output_name=name).start()
    yield ours, real, tunes
    ours.stop()
    real.stop()


def test_mpc_script_matches_mpd(both) -> None:  # type: ignore[no-untyped-def]
    ours, real, tunes = both
    titles = [t.title for t in tunes]
    theirs = run_mpc(real.port, mpc_steps([standin_uri(t.uri) for t in tunes], titles))
    mine = run_mpc(ours.port, mpc_steps([t.uri for t in tunes], titles))
    bad = []
    for name in theirs:
        wire = name not in WIRE_RACES
        d = _diff(name, theirs[name].render(wire), mine[name].render(wire))
        if d:
            bad.append("\n".join(d))
    assert not bad, f"{len(bad)}/{len(theirs)} mpc steps differ:\n" + "\n".join(bad)


def test_raw_protocol_matches_mpd(both) -> None:  # type: ignore[no-untyped-def]
    ours, real, tunes = both
    theirs = run_raw(real.port, raw_scenarios([standin_uri(t.uri) for t in tunes]))
    mine = run_raw(ours.port, raw_scenarios([t.uri for t in tunes]))
    bad = ["\n".join(d) for name in theirs if (d := _diff(name, theirs[name], mine[name]))]
    assert not bad, f"{len(bad)}/{len(theirs)} raw scenarios differ:\n" + "\n".join(bad)


def test_goldens_match_ours(tmp_path: Path) -> None:
    """The committed goldens (captured from mpd 0.23.12 with tests/mpd_transcripts.py) against ours."""
    need_program("mpc")
    files = sorted((GOLDEN / "raw").glob("*.txt"))
    assert len(files) >= 30, "tests/golden/raw is missing: python tests/mpd_transcripts.py capture-golden"
    ours = start_daemon(tmp_path / "ours")
    try:
        tunes = library_tunes(tmp_path / "lib")
        mine = run_raw(ours.port, raw_scenarios([t.uri for t in tunes]))
    finally:
        ours.stop()
    bad = ["\n".join(d) for f in files if (d := _diff(f.stem, f.read_text(), mine[f.stem]))]
    assert not bad, "\n".join(bad)
