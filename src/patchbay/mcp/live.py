"""Live list changes: tell connected clients the moment what they may see changes.

Every gateway process watches the database (PostgreSQL LISTEN/NOTIFY, or SQLite's change
counter) and, on a change, compares the revisions each open stream was opened with
against the current ones: a server's revision covers its tools, names, descriptions,
upstreams and quarantines; a key's revision covers its permissions. A stream whose
baseline moved gets ``notifications/tools/list_changed`` (and the prompts and resources
ones when the server's upstreams changed). Each process serves only its own streams,
and every process watches the same database, so a change made anywhere (another replica,
the CLI) reaches every client exactly once per stream, without relying on pub/sub.

A stream lives no longer than its key: a scan that finds the key revoked, expired or
deleted ends the stream instead of notifying it. Revoking is a database change, so it
is seen at once; expiry is not, so the feed also wakes at the earliest expiry of the
keys it serves, and every ``RECHECK_SECONDS`` whatever happens (a bound on any miss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.catalog import Catalog
from patchbay.store.changes import ChangeWatcher
from patchbay.store.models import ApiKey, Server, ServerTemplateLink

logger = logging.getLogger(__name__)

TOOLS = "notifications/tools/list_changed"
PROMPTS = "notifications/prompts/list_changed"
RESOURCES = "notifications/resources/list_changed"
# Which list each kind of notification is about, by server capability.
KIND_CAPABILITY = {TOOLS: "tools", PROMPTS: "prompts", RESOURCES: "resources"}

Wrap = Callable[[str], JSONObject]

# The longest an open stream goes unchecked against the database, changes or not.
RECHECK_SECONDS = 30.0


def plain(method: str) -> JSONObject:
    """A notification as a legacy stream carries it."""
    return {"jsonrpc": "2.0", "method": method}


@dataclass(eq=False)
class Listener:
    """One open stream: what it was opened against, and where its notifications go."""

    server_id: str
    key_id: str
    server_revision: int
    key_revision: int
    upstreams: tuple[str, ...]
    kinds: frozenset[str]
    wrap: Wrap = plain
    queue: asyncio.Queue[JSONObject] = field(default_factory=asyncio.Queue)
    expires_at: datetime | None = None
    # Set when the stream must close: why, in words a client may read.
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""

    def send(self, methods: list[str]) -> None:
        for method in methods:
            if method in self.kinds:
                self.queue.put_nowait(self.wrap(method))

    def end(self, reason: str) -> None:
        self.reason = reason
        self.ended.set()


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored time is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def key_problem(key_id: str, row: tuple[int, datetime | None, datetime | None] | None, now: datetime) -> str | None:
    """Why a stream of this key may not stay open (None: it may)."""
    if row is None:
        return f"the API key {key_id} no longer exists"
    _revision, revoked_at, expires_at = row
    if revoked_at is not None:
        return "the API key was revoked"
    if expires_at is not None and _aware(expires_at) <= now:
        return "the API key expired"
    return None


def upstream_ids(catalog: Catalog) -> tuple[str, ...]:
    """The server's upstreams as the live feed compares them (in link order)."""
    return tuple(u.template_id for u in catalog.upstreams)


class LiveFeed:
    """The streams of this process, and the task that tells them about changes."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], watcher: ChangeWatcher) -> None:
        self._sessionmaker = sessionmaker
        self._watcher = watcher
        self._listeners: set[Listener] = set()
        self._task: asyncio.Task[None] | None = None
        self._moved = asyncio.Event()  # a stream opened or closed
        # Streams not yet checked against the database (their key may have changed since it was resolved).
        self._fresh: set[Listener] = set()
        self._fresh_arrived = asyncio.Event()
        self.scans = 0

    @contextlib.contextmanager
    def listen(self, listener: Listener) -> Iterator[Listener]:
        """Register a stream for as long as the block runs."""
        self._listeners.add(listener)
        self._fresh.add(listener)
        self._fresh_arrived.set()
        self._moved.set()
        try:
            yield listener
        finally:
            self._listeners.discard(listener)
            self._fresh.discard(listener)
            self._moved.set()

    @property
    def listening(self) -> int:
        """How many streams this process holds open."""
        return len(self._listeners)

    async def until_listening(self, count: int, *, at_most: bool = False) -> None:
        """Return once at least (or ``at_most``) ``count`` streams are open (tests and benchmarks wait on it)."""
        while len(self._listeners) > count if at_most else len(self._listeners) < count:
            self._moved.clear()
            await self._moved.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def _next_check(self) -> float | None:
        """Seconds until a scan is due without any change: the earliest key expiry, at most RECHECK_SECONDS."""
        if not self._listeners:
            return None
        now = datetime.now(UTC)
        due = RECHECK_SECONDS
        for item in self._listeners:
            if item.expires_at is not None:
                due = min(due, (item.expires_at - now).total_seconds())
        return max(due, 0.1)  # never a busy loop, even while scans fail

    async def _run(self) -> None:
        generation = self._watcher.generation()
        changed: asyncio.Future[int] | None = None
        try:
            while True:
                if changed is None:
                    changed = asyncio.ensure_future(self._watcher.wait(generation))
                joined = asyncio.ensure_future(self._fresh_arrived.wait())
                waiting: set[asyncio.Future[Any]] = {changed, joined}
                done, _ = await asyncio.wait(waiting, timeout=self._next_check(), return_when="FIRST_COMPLETED")
                joined.cancel()
                targets: Collection[Listener]
                if changed in done:
                    generation, changed = changed.result(), None
                    targets = self._listeners
                elif joined in done:
                    targets = self._fresh
                else:  # an expiry is due, or the periodic recheck
                    targets = self._listeners
                self._fresh_arrived.clear()
                if not targets:
                    continue
                try:
                    await self.scan(list(targets))
                except asyncio.CancelledError:
                    raise
                except Exception:  # a failed scan must not end live notifications; the next change retries
                    logger.exception("could not check open streams for changes")
        finally:
            if changed is not None:
                changed.cancel()

    async def scan(self, listeners: list[Listener] | None = None) -> None:
        """Compare open streams' baselines with the database: notify the ones that moved, end the ones
        whose key is no longer valid."""
        self.scans += 1
        listeners = list(self._listeners) if listeners is None else listeners
        self._fresh.difference_update(listeners)
        server_ids = {item.server_id for item in listeners}
        key_ids = {item.key_id for item in listeners}
        async with self._sessionmaker() as session:
            server_rows = await session.execute(select(Server.id, Server.revision).where(Server.id.in_(server_ids)))
            servers: dict[str, int] = {row[0]: row[1] for row in server_rows.all()}
            key_rows = await session.execute(
                select(ApiKey.id, ApiKey.revision, ApiKey.revoked_at, ApiKey.expires_at).where(ApiKey.id.in_(key_ids))
            )
            keys: dict[str, tuple[int, datetime | None, datetime | None]] = {
                row[0]: (row[1], row[2], row[3]) for row in key_rows.all()
            }
            moved = {i.server_id for i in listeners if servers.get(i.server_id, i.server_revision) != i.server_revision}
            links: dict[str, list[str]] = {server_id: [] for server_id in moved}
            if moved:
                # The links alone say whether prompts and resources may have changed: no catalog is built here.
                link_rows = await session.execute(
                    select(ServerTemplateLink.server_id, ServerTemplateLink.template_id)
                    .where(ServerTemplateLink.server_id.in_(moved))
                    .order_by(ServerTemplateLink.position, ServerTemplateLink.template_id)
                )
                for server_id, template_id in link_rows.all():
                    links[server_id].append(template_id)
        now = datetime.now(UTC)
        for item in listeners:
            key = keys.get(item.key_id)
            problem = key_problem(item.key_id, key, now)
            if problem is not None:
                self._listeners.discard(item)  # a revoked key's stream gets nothing more, only its end
                self._moved.set()
                item.end(problem)
                continue
            assert key is not None
            item.expires_at = _aware(key[2]) if key[2] is not None else None
            methods: list[str] = []
            server_rev = servers.get(item.server_id)
            if server_rev is not None and server_rev != item.server_revision:
                methods.append(TOOLS)
                linked = tuple(links.get(item.server_id, ()))
                if linked != item.upstreams:
                    methods += [PROMPTS, RESOURCES]
                    item.upstreams = linked
                item.server_revision = server_rev
            key_rev = key[0]
            if key_rev != item.key_revision:
                if TOOLS not in methods:
                    methods.append(TOOLS)
                item.key_revision = key_rev
            item.send(methods)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
