"""Deadlines of in-flight calls on one connection, watched by a single timer."""

from __future__ import annotations

import asyncio
import math
from typing import Any

# uvloop's timers have millisecond resolution and may run up to a millisecond early.
_SLACK = 0.001


class Deadlines:
    """Cancels a call's task when its deadline passes, as ``asyncio.timeout()`` would.

    A timer per call (``loop.call_at`` and its cancellation) cost more than the rest of the
    client's bookkeeping together (~10 k instructions per call under uvloop). Calls on a
    connection mostly share one timeout, so their deadlines arrive in order: one timer, set
    for the earliest deadline, serves them all, and a finished call only leaves a dict.
    """

    __slots__ = ("_calls", "_expired", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._calls: dict[int, tuple[float, asyncio.Task[Any]]] = {}
        self._expired: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def start(self, key: int, task: asyncio.Task[Any], seconds: float) -> None:
        """Cancel ``task`` unless ``stop(key)`` comes within ``seconds``."""
        loop = task.get_loop()
        when = loop.time() + seconds
        self._calls[key] = (when, task)
        if when < self._timer_at:
            self._arm(loop, when)

    def expired(self, key: int) -> bool:
        """Whether the deadline of ``key`` has cancelled its task."""
        return key in self._expired

    def stop(self, key: int) -> None:
        """The call ``key`` ended; its deadline no longer applies."""
        del self._calls[key]
        self._expired.discard(key)

    def close(self) -> None:
        """Stop the timer (the connection is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = math.inf

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire, loop)
        self._timer_at = when

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        self._timer_at = math.inf
        now = loop.time() + _SLACK
        nearest = math.inf
        for key, (when, task) in list(self._calls.items()):
            if when <= now:
                if key not in self._expired:
                    self._expired.add(key)
                    task.cancel()
            elif when < nearest:
                nearest = when
        if nearest < math.inf:
            self._arm(loop, nearest)
