"""Shared state: in-process by default, Redis when several replicas share it."""

from __future__ import annotations

from patchbay.settings import Settings
from patchbay.state.base import SharedStore
from patchbay.state.memory import MemoryStore

__all__ = ["MemoryStore", "SharedStore", "make_store"]


def make_store(settings: Settings, *, prefix: str = "patchbay:") -> SharedStore:
    """The store the settings ask for: Redis when ``redis_url`` is set, else in-process memory."""
    if settings.redis_url:
        # Imported here so a single-process install (and the CLI) never loads the Redis client.
        from patchbay.state.redis import RedisStore

        return RedisStore(settings.redis_url, prefix=prefix)
    return MemoryStore()
