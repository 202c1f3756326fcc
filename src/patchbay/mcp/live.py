"""Live list changes: tell connected clients the moment what they may see changes.

Every gateway process watches the database (PostgreSQL LISTEN/NOTIFY, or SQLite's change
counter) and, on a change, compares the revisions each open stream was opened with
against the current ones: a server's revision covers its tools, names, descriptions,
upstreams and quarantines; a key's revision covers its permissions. A stream whose
baseline moved gets ``notifications/tools/list_changed`` (and the prompts and resources
ones when the server's upstreams changed). Each process serves only its own streams,
and every process watches the same database, so a change made anywhere (another replica,
the CLI) reaches every client exactly once per stream, without relying on pub/sub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

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

    def send(self, methods: list[str]) -> None:
        for method in methods:
            if method in self.kinds:
                self.queue.put_nowait(self.wrap(method))


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
        self._joined = asyncio.Event()
        self.scans = 0

    @contextlib.contextmanager
    def listen(self, listener: Listener) -> Iterator[asyncio.Queue[JSONObject]]:
        """Register a stream for as long as the block runs."""
        self._listeners.add(listener)
        self._joined.set()
        try:
            yield listener.queue
        finally:
            self._listeners.discard(listener)

    @property
    def listening(self) -> int:
        """How many streams this process holds open."""
        return len(self._listeners)

    async def until_listening(self, count: int) -> None:
        """Return once at least ``count`` streams are open (tests and benchmarks wait on it)."""
        while len(self._listeners) < count:
            self._joined.clear()
            await self._joined.wait()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        generation = self._watcher.generation()
        while True:
            generation = await self._watcher.wait(generation)
            if not self._listeners:
                continue
            try:
                await self.scan()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed scan must not end live notifications; the next change retries
                logger.exception("could not check open streams for changes")

    async def scan(self) -> None:
        """Compare every open stream's baseline with the database and notify the ones that moved."""
        self.scans += 1
        listeners = list(self._listeners)
        server_ids = {item.server_id for item in listeners}
        key_ids = {item.key_id for item in listeners}
        async with self._sessionmaker() as session:
            server_rows = await session.execute(select(Server.id, Server.revision).where(Server.id.in_(server_ids)))
            servers: dict[str, int] = {row[0]: row[1] for row in server_rows.all()}
            key_rows = await session.execute(select(ApiKey.id, ApiKey.revision).where(ApiKey.id.in_(key_ids)))
            keys: dict[str, int] = {row[0]: row[1] for row in key_rows.all()}
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
        for item in listeners:
            methods: list[str] = []
            server_rev = servers.get(item.server_id)
            if server_rev is not None and server_rev != item.server_revision:
                methods.append(TOOLS)
                now = tuple(links.get(item.server_id, ()))
                if now != item.upstreams:
                    methods += [PROMPTS, RESOURCES]
                    item.upstreams = now
                item.server_revision = server_rev
            key_rev = keys.get(item.key_id)
            if key_rev is not None and key_rev != item.key_revision:
                if TOOLS not in methods:
                    methods.append(TOOLS)
                item.key_revision = key_rev
            item.send(methods)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
