"""Logging that a flood cannot turn into a disk-filling loop: a token bucket of lines per minute,
and a periodic line with what was dropped and the listener's counters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping


class RateLimitedLog:
    """At most ``per_min`` lines a minute (bursts up to that many); the rest are counted."""

    def __init__(self, logger: logging.Logger, per_min: int, clock: Callable[[], float]) -> None:
        self.logger = logger
        self.per_min = per_min
        self.clock = clock
        self._tokens = float(per_min)
        self._t = clock()
        self.dropped = 0
        self.written = 0

    def log(self, level: int, msg: str, *args: object, exc_info: bool = False) -> bool:
        now = self.clock()
        self._tokens = min(float(self.per_min), self._tokens + (now - self._t) * self.per_min / 60.0)
        self._t = now
        if self._tokens < 1.0:
            self.dropped += 1
            return False
        self._tokens -= 1.0
        self.written += 1
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def summary(self, counters: Mapping[str, int], sizes: Mapping[str, int]) -> None:
        """The periodic line: never rate-limited, always one line."""
        dropped, self.dropped = self.dropped, 0
        items = " ".join(f"{k}={v}" for k, v in sorted(counters.items()) if v)
        state = " ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
        self.logger.info("knock: %d log lines dropped; counters: %s; state: %s", dropped, items or "-", state)
