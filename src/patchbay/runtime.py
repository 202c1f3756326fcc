"""The live objects of one gateway process, created at startup and closed at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from patchbay.audit.metrics import CallMetrics
from patchbay.audit.objects import ObjectStore, make_object_store
from patchbay.audit.payloads import PayloadWriter
from patchbay.audit.tracing import Tracing, make_tracing
from patchbay.audit.writer import AuditWriter
from patchbay.auth.principal import Principal
from patchbay.auth.resolver import KeyResolver
from patchbay.engine.runner import Limits
from patchbay.errors import PatchbayError
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.live import LiveFeed
from patchbay.mcp.relay import ContinuationRelay
from patchbay.mcp.resource_watch import ResourceWatcher
from patchbay.mcp.session import SessionStore, server_events_channel
from patchbay.oauth.manager import TokenManager
from patchbay.pipeline import Pipeline
from patchbay.policy.tools import visible
from patchbay.routing.catalog import Catalog, CatalogCache
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.services.audit_logs import prune_logs
from patchbay.services.upstream_sync import linked_upstreams, sync_upstream
from patchbay.settings import Settings
from patchbay.state import make_store
from patchbay.state.base import SharedStore
from patchbay.store.changes import ChangeWatcher, make_watcher
from patchbay.store.db import make_engine, make_sessionmaker

logger = logging.getLogger(__name__)

_LIST_CACHE_SIZE = 4096
_RETENTION_INTERVAL = 3600.0
RELAYED_EVENTS = frozenset(
    {"notifications/resources/updated", "notifications/prompts/list_changed", "notifications/resources/list_changed"}
)


@dataclass
class Gateway:
    settings: Settings
    secret: bytes
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    store: SharedStore
    pool: UpstreamPool
    audit: AuditWriter
    resolver: KeyResolver
    catalogs: CatalogCache
    sessions: SessionStore
    watcher: ChangeWatcher
    objects: ObjectStore
    payloads: PayloadWriter
    tokens: TokenManager
    continuations: dict[str, object] = field(default_factory=dict)
    # Names this process in input_required tokens, so a retry on another replica finds its way back.
    node_id: str = field(default_factory=lambda: secrets.token_hex(6))
    relay: ContinuationRelay = field(init=False)
    resources: ResourceWatcher = field(init=False)
    pipeline: Pipeline = field(init=False)
    live: LiveFeed = field(init=False)
    _tool_lists: OrderedDict[tuple[str, int, object], list[JSONObject]] = field(default_factory=OrderedDict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _syncing: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _sync_again: set[str] = field(default_factory=set)
    metrics: CallMetrics = field(default_factory=CallMetrics)
    tracing: Tracing | None = None
    tool_list_lookups: int = 0  # for /metrics: hits are lookups minus misses
    tool_list_misses: int = 0

    def __post_init__(self) -> None:
        self.resources = ResourceWatcher(self.pool, self._upstream_event)
        self.relay = ContinuationRelay(self.store, self.node_id, self.continuations)
        self.pipeline = Pipeline(self.engine, self.sessionmaker, self.store, local_limits(self.settings))
        self.live = LiveFeed(self.sessionmaker, self.watcher)

    def visible_tools(self, principal: Principal, catalog: Catalog) -> list[JSONObject]:
        """The tool definitions a key may see, cached per catalog revision and permission set.

        Keys with the same permissions on a server share one list; keys whose permissions
        differ never do, because the permission set itself is part of the cache key.
        """
        grants: object = "*" if principal.all_tools else frozenset(principal.grants.items())
        key = (catalog.server_id, catalog.revision, grants)
        self.tool_list_lookups += 1
        found = self._tool_lists.get(key)
        if found is None:
            self.tool_list_misses += 1
            found = [r.definition for r in catalog.tools.values() if visible(principal, r)]
            self._tool_lists[key] = found
            if len(self._tool_lists) > _LIST_CACHE_SIZE:
                self._tool_lists.popitem(last=False)
        else:
            self._tool_lists.move_to_end(key)
        return found

    async def start(self) -> None:
        await self.watcher.start()
        self.pool.on_notification(self._upstream_event)
        await self.pool.start()
        await self.audit.start()
        await self.payloads.start()
        await self.relay.start()
        self.live.start()
        self._tasks.append(asyncio.create_task(self._housekeeping()))
        if self.settings.upstream_sync_seconds > 0:
            self._tasks.append(asyncio.create_task(self._periodic_sync()))
        if self.settings.audit_retention_days is not None:
            self._tasks.append(asyncio.create_task(self._retention(self.settings.audit_retention_days)))

    async def _upstream_event(self, spec_key: str, method: str, params: JSONObject) -> None:
        """Fan an upstream's connection-level event out to every server that routes to it."""
        if method == "notifications/tools/list_changed":
            # Pool keys are "template" or "template:org" (an org's own credentials): ask on that connection.
            template_id, _, org_id = spec_key.partition(":")
            self.request_sync(template_id, org_id or None)
            return
        if method not in RELAYED_EVENTS:
            return
        message = orjson.dumps({"jsonrpc": "2.0", "method": method, "params": params})
        for server_id in self.catalogs.servers_using(spec_key):
            await self.store.publish(server_events_channel(server_id), message)

    def request_sync(self, template_id: str, org_id: str | None = None) -> None:
        """Re-discover an upstream soon; requests arriving while one runs fold into one more run."""
        running = self._syncing.get(template_id)
        if running is not None and not running.done():
            self._sync_again.add(template_id)
            return
        self._syncing[template_id] = asyncio.create_task(self._sync(template_id, org_id))

    async def _sync(self, template_id: str, org_id: str | None) -> None:
        while True:
            self._sync_again.discard(template_id)
            try:
                result = await sync_upstream(
                    self.sessionmaker,
                    template_id=template_id,
                    secret=self.secret,
                    timeout=self.settings.upstream_timeout,
                    pool=self.pool,
                    org_id=org_id,
                    channel="mcp",  # an upstream announced it over MCP
                )
                if result.quarantined:
                    logger.warning("quarantined tools awaiting review: %s", ", ".join(result.quarantined))
            except PatchbayError as exc:
                logger.warning("could not re-sync upstream %s: %s", template_id, exc)
            except Exception:  # a background task: log and carry on, the next change retries
                logger.exception("re-syncing upstream %s failed", template_id)
            if template_id not in self._sync_again:
                return

    async def _periodic_sync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.upstream_sync_seconds)
            try:
                async with self.sessionmaker() as session:
                    ids = await linked_upstreams(session)
            except Exception:  # keep the loop alive whatever the database does
                logger.exception("could not list upstreams to re-sync")
                continue
            for template_id in ids:
                self.request_sync(template_id)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            try:
                await self.resolver.flush_last_used()
            except Exception:  # keep the loop alive whatever the database does
                logger.exception("could not record key usage")

    async def _retention(self, days: float) -> None:
        # Every replica may prune: deleting what another replica already deleted is harmless.
        while True:
            try:
                cutoff = datetime.now(UTC) - timedelta(days=days)
                pruned = await prune_logs(self.sessionmaker, self.objects, older_than=cutoff)
                if pruned.records:
                    logger.info("retention: pruned %d audit records and %d payloads", pruned.records, pruned.payloads)
            except Exception:  # keep the loop alive whatever the database or object store does
                logger.exception("audit retention run failed; retrying later")
            await asyncio.sleep(_RETENTION_INTERVAL)

    async def aclose(self) -> None:
        for task in [*self._tasks, *self._syncing.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self.resolver.flush_last_used()
        await self.live.aclose()
        await self.resources.aclose()
        await self.relay.aclose()
        # Payloads first: each one hands its record to the audit writer when it is stored.
        await self.payloads.aclose()
        await self.audit.aclose()
        await self.objects.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.shutdown)
        await self.pool.aclose()
        await self.store.aclose()
        await self.watcher.aclose()
        await self.engine.dispose()


def local_limits(settings: Settings) -> Limits:
    """The local engine's size limits from the settings."""
    return Limits(
        max_input_bytes=settings.max_tool_input_bytes,
        max_document_bytes=settings.max_document_bytes,
        max_result_bytes=settings.max_tool_result_bytes,
    )


def build_gateway(settings: Settings) -> Gateway:
    secret = settings.resolve_secret_key()
    engine = make_engine(settings.effective_database_url)
    sessionmaker = make_sessionmaker(engine)
    store = make_store(settings)
    tokens = TokenManager(sessionmaker=sessionmaker, store=store, secret=secret, settings=settings)
    watcher = make_watcher(engine, engine.url.database if engine.dialect.name == "sqlite" else None)
    metrics = CallMetrics()
    audit = AuditWriter(sessionmaker, observe=metrics.observe)
    objects = make_object_store(settings.object_store_url, default_root=settings.objects_dir)
    return Gateway(
        settings=settings,
        secret=secret,
        engine=engine,
        sessionmaker=sessionmaker,
        store=store,
        pool=UpstreamPool(
            max_stdio_processes=settings.stdio_max_processes,
            idle_seconds=settings.stdio_idle_seconds,
            connect_timeout=settings.upstream_connect_timeout,
        ),
        audit=audit,
        metrics=metrics,
        tracing=make_tracing(settings.otlp_endpoint),
        objects=objects,
        payloads=PayloadWriter(objects, audit, cap=settings.payload_max_bytes),
        resolver=KeyResolver(sessionmaker, secret, watcher),
        watcher=watcher,
        catalogs=CatalogCache(sessionmaker, secret, tokens),
        tokens=tokens,
        sessions=SessionStore(store, ttl=settings.session_ttl_seconds),
    )
