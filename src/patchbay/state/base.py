"""The shared-store seam: session and protocol state that any replica must be able to read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol


class SharedStore(Protocol):
    """Key/value with TTLs plus publish/subscribe. Values are bytes; callers choose the encoding."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None: ...

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Set only when the key is absent; True when this call set it."""
        ...

    async def delete(self, key: str) -> None: ...

    async def expire(self, key: str, ttl: float) -> bool:
        """Renew a key's TTL; False when the key is gone."""
        ...

    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Atomically add one and return the new value; the TTL is set when the key is created."""
        ...

    async def take_token(self, key: str, *, rate: float, capacity: float) -> float:
        """Token bucket: take one token from ``key`` (refilled at ``rate`` per second up to
        ``capacity``, full when new). Returns 0.0 when taken, else the seconds until one is there."""
        ...

    async def publish(self, channel: str, message: bytes) -> None: ...

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, bytes]]]:
        """Yield ``(channel, message)`` for every message published after the subscription is live."""
        ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
