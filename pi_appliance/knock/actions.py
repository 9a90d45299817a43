"""What a knock may do to the player, and nothing else. The daemon hands an implementation over;
the knock package never imports the player.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Protocol, runtime_checkable

from pi_appliance.music.model import Tune


@runtime_checkable
class KnockActions(Protocol):
    """Player callbacks. Tune numbers are 1-based, as ``pictl play N``."""

    async def play(self, tune: int) -> None: ...

    async def stop(self) -> None: ...

    async def next(self) -> None: ...

    async def volume(self, volume: int) -> None: ...

    async def play_tune(self, tune: Tune, title: str) -> None:
        """Add ``tune`` (a knock pool) to the queue and play it: it shows in ``status`` like any tune."""
        ...


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


class PlayerActions:
    """:class:`KnockActions` over the player's public API (``add_tune``, ``play``, ``stop``,
    ``next``, ``set_volume``, ``entries``, ``delete_id``). The daemon builds one with its player.

    The queue keeps at most one knock-pool entry: the previous one is removed when a new pool
    plays, so a stream of knocks cannot grow the queue.
    """

    POOL_URI = "knock:pool"

    def __init__(self, player: Any) -> None:
        self.player = player
        self._pool_id: int | None = None

    async def play(self, tune: int) -> None:
        entries = self.player.entries()
        if not 1 <= tune <= len(entries):
            raise ValueError(f"no tune {tune} in the queue ({len(entries)} entries)")
        await _maybe_await(self.player.play(tune - 1))

    async def stop(self) -> None:
        await _maybe_await(self.player.stop())

    async def next(self) -> None:
        await _maybe_await(self.player.next())

    async def volume(self, volume: int) -> None:
        await _maybe_await(self.player.set_volume(volume))

    async def play_tune(self, tune: Tune, title: str) -> None:
        old = self._pool_id
        if old is not None and any(e.id == old for e in self.player.entries()):
            delete_id = getattr(self.player, "delete_id", None)
            if delete_id is not None:
                await _maybe_await(delete_id(old))
        if title and title != tune.title:
            tune = dataclasses.replace(tune, title=title)
        songid = self.player.add_tune(tune, self.POOL_URI)
        self._pool_id = songid
        for pos, e in enumerate(self.player.entries()):
            if e.id == songid:
                await _maybe_await(self.player.play(pos))
                return
        raise RuntimeError("the knock pool tune vanished from the queue")
