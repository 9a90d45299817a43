"""The knock "pool": fixed-length ticks of tone (1) or silence (0) turned into a tune.

Each tick lasts ``tick_ms``; every tone tick sounds ``freq_hz``. Runs of equal ticks merge into one
note or rest; leading and trailing silence is kept (it spaces repeated knocks).
"""

from __future__ import annotations

from collections.abc import Iterable

from pi_appliance.music.model import MAX_DURATION_US, MAX_FREQ_HZ, MAX_NOTES, Note, Tune, TuneError

DEFAULT_TICK_MS = 100
DEFAULT_FREQ_HZ = 1760.0  # A6: loud on a piezo, and an RTTTL pitch (a knock tune formats as RTTTL)
MAX_TICKS = 64 * 1024


def parse_ticks(
    ticks: str | bytes | Iterable[int | bool],
    *,
    tick_ms: float = DEFAULT_TICK_MS,
    freq_hz: float = DEFAULT_FREQ_HZ,
    title: str = "knock",
) -> Tune:
    """``"1101 00"`` (whitespace ignored) or a sequence of 0/1 (or bools) -> Tune.

    TuneError names the index of a bad tick (the character offset for text).
    """
    if not 0 < tick_ms <= 60_000:
        raise TuneError(f"tick length must be above 0 and at most 60000 ms, got {tick_ms!r}", None)
    if not 0 < freq_hz <= MAX_FREQ_HZ:
        raise TuneError(f"frequency must be above 0 and at most {MAX_FREQ_HZ:g} Hz, got {freq_hz!r}", None)
    if isinstance(ticks, bytes):
        try:
            ticks = ticks.decode("ascii")
        except UnicodeDecodeError as e:
            raise TuneError("knock ticks must be 0 or 1", e.start) from None
    bits: list[tuple[bool, int]] = []
    if isinstance(ticks, str):
        for i, ch in enumerate(ticks):
            if ch in "01":
                bits.append((ch == "1", i))
            elif not ch.isspace():
                raise TuneError(f"knock ticks must be 0 or 1, got {ch!r}", i, token=ch)
            if len(bits) > MAX_TICKS:
                raise TuneError(f"more than {MAX_TICKS} ticks", i)
    else:
        for i, t in enumerate(ticks):
            if t is not True and t is not False and t not in (0, 1):
                raise TuneError(f"knock ticks must be 0 or 1, got {t!r}", i)
            if isinstance(t, float):
                raise TuneError(f"knock ticks must be 0 or 1, got {t!r}", i)
            bits.append((bool(t), i))
            if len(bits) > MAX_TICKS:
                raise TuneError(f"more than {MAX_TICKS} ticks", i)
    if not any(b for b, _ in bits):
        raise TuneError("no tone tick (1) to play", 0)
    notes: list[Note] = []
    run_start = 0
    t_end_prev = 0
    for k in range(1, len(bits) + 1):
        if k < len(bits) and bits[k][0] == bits[run_start][0]:
            continue
        end_us = round(k * tick_ms * 1000)  # the running total is rounded, never each run
        if end_us > MAX_DURATION_US:
            raise TuneError(f"tune longer than {MAX_DURATION_US // 60_000_000} minutes", bits[k - 1][1])
        if len(notes) >= MAX_NOTES:
            raise TuneError(f"more than {MAX_NOTES} notes", bits[run_start][1])
        notes.append(Note(freq_hz if bits[run_start][0] else 0.0, end_us - t_end_prev))
        t_end_prev = end_us
        run_start = k
    return Tune(title, tuple(notes), "knock")
