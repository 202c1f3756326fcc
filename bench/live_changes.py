"""Live changes: change → list_changed latency, and tools/list latency cached versus uncached.

    .venv/bin/python bench/live_changes.py [--changes 60] [--lists 200] [--postgres URL] [--redis URL]

Part 1 starts real ``patchbay serve`` processes on one database and makes a change (switching
a tool off or on, in its own transaction, as the CLI does) while SDK clients hold their
notification streams open: one gateway; then two gateways sharing the database and Redis,
with a legacy client on one and a 2026-07-28 client on the other (the figure is the later
arrival of the two), the change made first as the CLI makes it, then over REST on gateway A.
Part 2 serves a key whose permissions cover half of a 2,000-tool server
(50 upstreams × 40 tools) and times ``tools/list`` over HTTP with the list cache, without it
(the per-permission-set list rebuilt each time), and without any cache (catalog rebuilt from
the database too), interleaved in rounds. Results go to ``bench/results/live_changes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import mcp_types as types
from mcp import Client

from patchbay.runtime import Gateway
from patchbay.services.keys import create_key
from patchbay.services.orgs import add_member, ensure_default_org
from patchbay.services.servers import create_server, get_server, set_tools_enabled
from patchbay.services.tokens import create_token
from patchbay.services.upstreams import add_upstream
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from procs import BenchError, environ, free_port, start, stop, wait_http

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "bench-secret-key-0123456789abcdef"


@dataclass(frozen=True)
class FakeDiscovery:
    """What discovery would have found; tools/list never contacts the upstream, so none runs."""

    tools: list[dict[str, Any]]
    protocol_version: str = "2025-11-25"
    server_info: dict[str, Any] = field(default_factory=lambda: {"name": "bench", "version": "1"})
    capabilities: dict[str, Any] = field(default_factory=lambda: {"tools": {}})
    instructions: str | None = None


def _tool(name: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"text": {"type": "string", "description": "What to process."}}}
    return {"name": name, "description": f"Tool {name}: does one small thing with the text.", "inputSchema": schema}


async def seed(url: str, *, upstreams: int, per: int, allow_share: float) -> tuple[str, str, list[str]]:
    """A server over fake upstreams and a key to it; returns (server slug, key secret, exposed names)."""
    tag = secrets.token_hex(3)
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            org = await ensure_default_org(session)
            slugs = []
            for i in range(upstreams):
                found = FakeDiscovery(tools=[_tool(f"t{j:03d}") for j in range(per)])
                template = await add_upstream(
                    session, org_id=org.id, name=f"u{tag}{i:02d}", transport="stdio", command=["unused"],
                    url=None, env={}, headers={}, discovery=found, secret=SECRET.encode(),
                )  # fmt: skip
                slugs.append(template.slug)
            server = await create_server(
                session, org_id=org.id, name=f"bench-{tag}", upstream_slugs=slugs, tools=None, plain_names=False
            )
            user = await create_user(session, email=f"bench-{tag}@example.com", password=None, admin=False)
            names = sorted(f"{slug}__t{j:03d}" for slug in slugs for j in range(per))
            allow = None if allow_share >= 1 else [(n, "rw") for n in names[:: round(1 / allow_share)]]
            _key, key = await create_key(
                session, server=server, user=user, name="bench", allow=allow, expires_in=None, secret=SECRET.encode()
            )
            await session.commit()
            return server.slug, key, names
    finally:
        await engine.dispose()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"n": len(values), "median_ms": statistics.median(values) * 1000, "p99_ms": p99 * 1000}


# --- part 1: change → notification ---------------------------------------------------------


@asynccontextmanager
async def gateways(count: int, work: Path, env: dict[str, str]) -> AsyncIterator[list[str]]:
    children, urls = [], []
    try:
        for n in range(count):
            port = free_port()
            cmd = [str(Path(sys.executable).parent / "patchbay"), "serve", "--port", str(port)]
            child = start(f"gateway-{n}", cmd, log=work / f"gateway-{n}.log", env=env)
            children.append(child)
            await asyncio.to_thread(wait_http, child, f"http://127.0.0.1:{port}/healthz")
            urls.append(f"http://127.0.0.1:{port}")
        yield urls
    finally:
        for child in children:
            stop(child)


@asynccontextmanager
async def watching(url: str, key: str, mode: str, arrivals: asyncio.Queue[float]) -> AsyncIterator[None]:
    """An SDK client whose change notifications are timed on arrival."""

    async def on_message(message: object) -> None:
        if isinstance(message, types.ToolListChangedNotification):
            arrivals.put_nowait(time.perf_counter())

    async with Client(f"{url}/mcp/k/{key}", mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            yield
            return
        async with client.listen(tools_list_changed=True) as sub:

            async def drain() -> None:
                async for _event in sub:
                    arrivals.put_nowait(time.perf_counter())

            task = asyncio.create_task(drain())
            try:
                yield
            finally:
                task.cancel()


async def toggle(url: str, server: str, tool: str, on: bool) -> float:
    """Switch ``tool`` in its own transaction; returns the moment just before the commit."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            org = await ensure_default_org(session)
            srv = await get_server(session, org_id=org.id, name_or_slug=server)
            await set_tools_enabled(session, server=srv, enable=[tool] if on else [], disable=[] if on else [tool])
            began = time.perf_counter()
            await session.commit()
            return began
    finally:
        await engine.dispose()


Toggle = Callable[[bool], Awaitable[float]]


def by_database(url: str, server: str, tool: str) -> Toggle:
    """Changes made as the CLI makes them: a transaction of this process, no gateway involved."""
    return lambda on: toggle(url, server, tool, on)


def over_rest(http: httpx.AsyncClient, server: str, tool: str) -> Toggle:
    """Changes made through one gateway's REST API (the clock starts before the request is sent)."""

    async def switch(on: bool) -> float:
        began = time.perf_counter()
        body = {"enable": [tool]} if on else {"disable": [tool]}
        response = await http.patch(f"/api/v1/orgs/default/servers/{server}/tools", json=body)
        if response.status_code != 200:
            raise BenchError(f"REST change failed: {response.text[:200]}")
        return began

    return switch


async def admin_headers(url: str, tag: str) -> dict[str, str]:
    """A personal access token of a new admin of the default org."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            org = await ensure_default_org(session)
            user = await create_user(
                session, email=f"admin-{tag}@example.com", password=None, admin=False, join_default=False
            )
            await add_member(session, org=org, user_id=user.id, role="admin")
            _row, token = await create_token(session, user=user, name="bench", expires_in=None, secret=SECRET.encode())
            await session.commit()
            return {"authorization": f"Bearer {token}"}
    finally:
        await engine.dispose()


async def measure_changes(change: Toggle, queues: list[asyncio.Queue[float]], changes: int) -> list[float]:
    # Streams open asynchronously: the first (untimed) changes go out until every client has heard one.
    on = False
    for queue in queues:
        heard = False
        while not heard:
            await change(on)
            on = not on
            try:
                await asyncio.wait_for(queue.get(), 2.0)
                heard = True
            except TimeoutError:
                continue
    await asyncio.sleep(0.5)  # let late copies of the warm-up notifications arrive before draining
    for queue in queues:
        while not queue.empty():
            queue.get_nowait()
    latencies = []
    for _ in range(changes):
        began = await change(on)
        on = not on
        arrived = [await asyncio.wait_for(queue.get(), 10.0) for queue in queues]
        latencies.append(max(arrived) - began)
    return latencies


async def part_changes(db_url: str, redis: str, changes: int, work: Path) -> dict[str, Any]:
    server, key, names = await seed(db_url, upstreams=1, per=10, allow_share=1)
    env = environ(
        PATCHBAY_HOME=str(work / "home"), PATCHBAY_DATABASE_URL=db_url, PATCHBAY_SECRET_KEY=SECRET,
        PATCHBAY_LOG_LEVEL="WARNING", PATCHBAY_UPSTREAM_SYNC_SECONDS="0",
    )  # fmt: skip
    out: dict[str, Any] = {}
    async with gateways(1, work, env) as [only]:
        queue: asyncio.Queue[float] = asyncio.Queue()
        async with watching(only, key, "legacy", queue):
            out["one_process"] = summary(await measure_changes(by_database(db_url, server, names[0]), [queue], changes))
    admin = await admin_headers(db_url, secrets.token_hex(3))
    async with gateways(2, work, {**env, "PATCHBAY_REDIS_URL": redis}) as [a, b]:
        qa: asyncio.Queue[float] = asyncio.Queue()
        qb: asyncio.Queue[float] = asyncio.Queue()
        async with (
            watching(a, key, "legacy", qa),
            watching(b, key, "2026-07-28", qb),
            httpx.AsyncClient(base_url=a, headers=admin, timeout=30) as http,
        ):
            database = by_database(db_url, server, names[0])
            out["two_processes"] = summary(await measure_changes(database, [qa, qb], changes))
            # Made on gateway A: A's own client and B's both time it.
            rest = over_rest(http, server, names[1])
            out["two_processes_rest_on_a"] = summary(await measure_changes(rest, [qa, qb], changes))
    return out


# --- part 2: tools/list, cached and uncached --------------------------------------------------


async def part_lists(db_url: str, lists: int, work: Path) -> dict[str, Any]:
    from tests.harness import serving_gateway  # the same in-process server the tests use

    server, key, _names = await seed(db_url, upstreams=50, per=40, allow_share=0.5)
    settings = Settings(home=work / "lists", database_url=None if db_url.startswith("sqlite") else db_url,
                        secret_key=SECRET, upstream_sync_seconds=0)  # fmt: skip
    if db_url.startswith("sqlite"):
        settings.home.mkdir(parents=True, exist_ok=True)
        settings = settings.model_copy(update={"database_url": db_url})
    body = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/list",
        "params": {"_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {}}},
    }  # fmt: skip
    headers = {"Authorization": f"Bearer {key}", "Mcp-Method": "tools/list", "MCP-Protocol-Version": "2026-07-28"}
    async with AsyncExitStack() as stack:
        url, gw = await stack.enter_async_context(serving_gateway(settings))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=headers, timeout=30))
        first = (await http.post("/mcp", json=body)).json()
        count = len(first["result"]["tools"])
        modes: dict[str, Callable[[Gateway], None]] = {
            "cached": lambda g: None,
            "list_uncached": lambda g: g._tool_lists.clear(),
            "uncached": lambda g: (g._tool_lists.clear(), g.catalogs.invalidate(first_server(g))),
        }
        timings: dict[str, list[float]] = {name: [] for name in modes}
        rounds = 10
        for _ in range(rounds):
            for name, before in modes.items():
                for _ in range(max(1, lists // rounds)):
                    before(gw)
                    began = time.perf_counter()
                    response = await http.post("/mcp", json=body)
                    timings[name].append(time.perf_counter() - began)
                    if response.status_code != 200:
                        raise BenchError(f"tools/list failed: {response.text[:200]}")
    return {"server": server, "tools_on_server": 2000, "tools_listed_for_key": count} | {
        name: summary(values) for name, values in timings.items()
    }


def first_server(gw: Gateway) -> str:
    return next(iter(gw.catalogs._catalogs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--lists", type=int, default=200)
    parser.add_argument("--postgres", help="also run part 1 on this PostgreSQL URL (its data is added to)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--workdir", type=Path, help="keep the databases and gateway logs here (default: a temp dir)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        sqlite = f"sqlite+aiosqlite:///{work / 'bench.db'}"
        migrate.upgrade(sqlite)
        results["changes_sqlite"] = asyncio.run(part_changes(sqlite, args.redis, args.changes, work))
        if args.postgres:
            migrate.upgrade(args.postgres)
            results["changes_postgresql"] = asyncio.run(part_changes(args.postgres, args.redis, args.changes, work))
        results["tools_list"] = asyncio.run(part_lists(sqlite, args.lists, work))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "live_changes.json").write_text(json.dumps(results, indent=2))
    print("change -> list_changed received (median / p99 ms)")
    for db in ("sqlite", "postgresql"):
        part = results.get(f"changes_{db}")
        if part:
            for where in ("one_process", "two_processes", "two_processes_rest_on_a"):
                s = part[where]
                print(f"  {db:<11} {where:<24} {s['median_ms']:8.1f} / {s['p99_ms']:8.1f}   (n={s['n']})")
    lists = results["tools_list"]
    print(f"tools/list, key allowed {lists['tools_listed_for_key']} of 2000 tools from 50 upstreams (median / p99 ms)")
    base = lists["cached"]["median_ms"]
    for name in ("cached", "list_uncached", "uncached"):
        s = lists[name]
        print(f"  {name:<14} {s['median_ms']:8.2f} / {s['p99_ms']:8.2f}   x{s['median_ms'] / base:.1f} of cached")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
