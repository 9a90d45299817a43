"""Writers for what a pin did: VCD (PulseView, GTKWave) and WAV (the square wave, to listen to).

Both stream: they take edges in time order and keep O(1) state, so a recording of any length costs
no memory. Times are integer µs from tick 0.
"""

from __future__ import annotations

import sys
import wave
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO


def _vcd_id(i: int) -> str:
    chars = []
    i += 1
    while i:
        i, r = divmod(i - 1, 94)
        chars.append(chr(33 + r))
    return "".join(chars)


class VcdWriter:
    """A value change dump of some gpios, timescale 1 µs. ``tick0_wall_ns`` goes into a comment."""

    def __init__(self, path: str | Path, gpios: Iterable[int], *, tick0_wall_ns: int | None = None) -> None:
        self.gpios = sorted(set(gpios))
        self._ids = {g: _vcd_id(i) for i, g in enumerate(self.gpios)}
        self._f: TextIO = open(path, "w", encoding="ascii")  # noqa: SIM115 - closed in close()
        self._last_t = -1
        f = self._f
        f.write("$version pi-appliance-sim $end\n")
        if tick0_wall_ns is not None:
            f.write(f"$comment tick0_wall_ns={tick0_wall_ns} (time.time_ns() of tick 0) $end\n")
        f.write("$timescale 1 us $end\n$scope module pi $end\n")
        for g in self.gpios:
            f.write(f"$var wire 1 {self._ids[g]} gpio{g} $end\n")
        f.write("$upscope $end\n$enddefinitions $end\n#0\n$dumpvars\n")
        for g in self.gpios:
            f.write(f"0{self._ids[g]}\n")
        f.write("$end\n")
        self._last_t = 0

    def edge(self, t_us: int, gpio: int, level: int) -> None:
        code = self._ids.get(gpio)
        if code is None:
            return
        if t_us != self._last_t:
            self._f.write(f"#{t_us}\n")
            self._last_t = t_us
        self._f.write(f"{1 if level else 0}{code}\n")

    def close(self, end_us: int | None = None) -> None:
        if self._f.closed:
            return
        if end_us is not None and end_us > self._last_t:
            self._f.write(f"#{end_us}\n")
        self._f.close()


def read_vcd(path: str | Path) -> tuple[dict[str, list[tuple[int, int]]], dict[str, str]]:
    """Edges per variable name from a VCD this module wrote (for tests and the bench), and comments."""
    names: dict[str, str] = {}
    edges: dict[str, list[tuple[int, int]]] = {}
    comments: dict[str, str] = {}
    t = 0
    in_dumpvars = False
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line.startswith("$var"):
                parts = line.split()
                names[parts[3]] = parts[4]
                edges[parts[4]] = []
            elif line.startswith("$comment"):
                for word in line.split()[1:]:
                    k, eq, v = word.partition("=")
                    if eq:
                        comments[k] = v
            elif line == "$dumpvars":
                in_dumpvars = True
            elif line == "$end" and in_dumpvars:
                in_dumpvars = False
            elif line.startswith("#"):
                t = int(line[1:])
            elif line[:1] in ("0", "1") and not in_dumpvars:
                edges[names[line[1:]]].append((t, int(line[0])))
    return edges, comments


class WavWriter:
    """One gpio as 16-bit mono PCM: high → +amplitude, low → 0, box-filtered per sample."""

    def __init__(self, path: str | Path, *, rate: int = 48_000, amplitude: float = 0.8) -> None:
        self.rate = rate
        self._w = wave.open(str(path), "wb")  # noqa: SIM115 - closed in close()
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(rate)
        self._full = int(32767 * amplitude)
        self._sd = 1e6 / rate  # sample duration, µs
        self._n = 0  # index of the sample being accumulated
        self._t = 0.0  # µs reached
        self._acc = 0.0  # high time inside sample n
        self._level = 0
        self._buf = array("h")

    def _sample_end(self) -> float:
        return (self._n + 1) * self._sd

    def advance(self, t_us: float) -> None:
        """Extend the current level up to ``t_us``."""
        lvl = self._level
        while t_us >= self._sample_end():
            end = self._sample_end()
            self._acc += lvl * (end - self._t)
            self._buf.append(round(self._full * self._acc / self._sd))
            self._n += 1
            self._t = end
            self._acc = 0.0
            whole = int((t_us - self._t) // self._sd)
            if whole > 0:
                self._buf.extend(array("h", [self._full * lvl]) * whole)
                self._n += whole
                self._t = self._n * self._sd
            if len(self._buf) >= 65536:
                self._flush()
        self._acc += lvl * (t_us - self._t)
        self._t = t_us

    def edge(self, t_us: int, level: int) -> None:
        self.advance(t_us)
        self._level = 1 if level else 0

    def _flush(self) -> None:
        if sys.byteorder == "big":
            self._buf.byteswap()
        self._w.writeframesraw(self._buf.tobytes())
        self._buf = array("h")

    def close(self, end_us: int | None = None) -> None:
        if end_us is not None:
            self.advance(end_us)
        self._flush()
        self._w.close()
