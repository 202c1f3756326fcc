"""The in-process shared store: the embedded default for a single gateway process."""

from __future__ import annotations

import heapq
import logging
import math
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from patchbay.errors import StoreUnavailable

logger = logging.getLogger(__name__)


_MAX_BUCKETS = 100_000


def check_bucket(rate: float, capacity: float) -> None:
    """Reject buckets that could never hand out a token."""
    if not (rate > 0 and math.isfinite(rate) and capacity >= 1 and math.isfinite(capacity)):
        raise ValueError(f"a token bucket needs rate > 0 and capacity >= 1, got {rate!r}, {capacity!r}")


def check_ttl(ttl: float | None) -> None:
    """Reject TTLs that Redis would refuse too, so both stores fail the same way."""
    if ttl is not None and not (ttl > 0 and math.isfinite(ttl)):
        raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")


class _Subscriber:
    __slots__ = ("channels", "send")

    def __init__(self, channels: frozenset[str], send: MemoryObjectSendStream[tuple[str, bytes]]) -> None:
        self.channels = channels
        self.send = send


class MemoryStore:
    """A ``SharedStore`` held in this process: keys with TTLs and pub/sub between local tasks.

    Everything runs on one event loop and no method awaits while it mutates state, so each
    operation is atomic without locks.
    """

    def __init__(self, *, subscriber_buffer: int = 10_000) -> None:
        self._values: dict[str, bytes] = {}
        self._deadlines: dict[str, float] = {}
        # (deadline, key) entries, possibly stale; lets expired keys be purged without a scan.
        self._expiry_heap: list[tuple[float, str]] = []
        self._subscribers: set[_Subscriber] = set()
        self._buckets: dict[str, tuple[float, float, float]] = {}  # key -> (tokens, counted at, full again at)
        self._subscriber_buffer = subscriber_buffer
        self._closed = False

    # --- keys ------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it is absent or expired."""
        self._check_open()
        self._purge()
        return self._values.get(key)

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``, replacing any previous value and TTL."""
        check_ttl(ttl)
        self._check_open()
        self._purge()
        self._put(key, value, ttl)

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Set only when the key is absent; True when this call set it."""
        check_ttl(ttl)
        self._check_open()
        self._purge()
        if key in self._values:
            return False
        self._put(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        self._check_open()
        self._values.pop(key, None)
        self._deadlines.pop(key, None)

    async def expire(self, key: str, ttl: float) -> bool:
        """Renew a key's TTL; False when the key is gone."""
        check_ttl(ttl)
        self._check_open()
        self._purge()
        if key not in self._values:
            return False
        self._set_deadline(key, ttl)
        return True

    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Atomically add one and return the new value; the TTL is set when the key is created."""
        check_ttl(ttl)
        self._check_open()
        self._purge()
        current = self._values.get(key)
        if current is None:
            self._put(key, b"1", ttl)
            return 1
        try:
            value = int(current) + 1
        except ValueError:
            raise ValueError(f"key {key!r} does not hold an integer") from None
        # Like Redis INCR: the value changes, the TTL stays.
        self._values[key] = str(value).encode()
        return value

    async def take_token(self, key: str, *, rate: float, capacity: float) -> float:
        """Token bucket: 0.0 when a token was taken, else the seconds until one is there."""
        check_bucket(rate, capacity)
        self._check_open()
        now = time.monotonic()
        tokens, then, _full_at = self._buckets.get(key, (capacity, now, now))
        tokens = min(capacity, tokens + (now - then) * rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / rate
        self._buckets[key] = (tokens, now, now + (capacity - tokens) / rate)
        if len(self._buckets) > _MAX_BUCKETS:
            # A bucket that has refilled carries no information: dropping it bounds memory and changes no answer.
            self._buckets = {k: v for k, v in self._buckets.items() if v[2] > now}
        return wait

    # --- pub/sub ---------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        """Deliver ``message`` to every live subscription on ``channel``."""
        self._check_open()
        for subscriber in tuple(self._subscribers):
            if channel not in subscriber.channels:
                continue
            try:
                subscriber.send.send_nowait((channel, message))
            except anyio.WouldBlock:
                # A publisher must never wait on a slow reader; pub/sub is best effort, as in Redis.
                logger.warning("dropping a message on %r: subscriber buffer is full", channel)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(subscriber)

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        """Yield ``(channel, message)`` for every message published after the subscription is live."""
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        self._check_open()
        send, receive = anyio.create_memory_object_stream[tuple[str, bytes]](self._subscriber_buffer)
        subscriber = _Subscriber(frozenset(channels), send)
        self._subscribers.add(subscriber)
        try:
            with receive:
                yield receive
        finally:
            self._subscribers.discard(subscriber)
            send.close()

    # --- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True while the store is open."""
        return not self._closed

    async def aclose(self) -> None:
        """Drop every key and end every open subscription."""
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.send.close()
        self._subscribers.clear()
        self._values.clear()
        self._buckets.clear()
        self._deadlines.clear()
        self._expiry_heap.clear()

    # --- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailable("the shared store is closed")

    def _put(self, key: str, value: bytes, ttl: float | None) -> None:
        self._values[key] = value
        if ttl is None:
            self._deadlines.pop(key, None)
        else:
            self._set_deadline(key, ttl)

    def _set_deadline(self, key: str, ttl: float) -> None:
        deadline = time.monotonic() + ttl
        self._deadlines[key] = deadline
        heapq.heappush(self._expiry_heap, (deadline, key))

    def _purge(self) -> None:
        now = time.monotonic()
        heap = self._expiry_heap
        while heap and heap[0][0] <= now:
            deadline, key = heapq.heappop(heap)
            # Entries left behind by a renewed or removed TTL no longer match the key's deadline.
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                del self._values[key]
