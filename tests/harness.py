"""Running a real gateway in the test's event loop, and provisioning it through the services."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import uvicorn
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.app import create_app, server_config
from patchbay.routing.discovery import Discovery, discover
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.runtime import Gateway
from patchbay.services.keys import create_key
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import create_server
from patchbay.services.upstreams import add_upstream
from patchbay.services.users import create_user, get_user
from patchbay.settings import Settings


def initialize_request(capabilities: dict[str, object] | None = None) -> dict[str, object]:
    """A 2025-11-25 ``initialize`` request body, for tests that speak raw HTTP."""
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities or {},
            "clientInfo": {"name": "test", "version": "1"},
        },
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[str]:
    """Serve the gateway on a free loopback port; yields its base URL."""
    async with serving_gateway(settings) as (url, _gateway):
        yield url


@asynccontextmanager
async def serving_gateway(settings: Settings) -> AsyncIterator[tuple[str, Gateway]]:
    """Serve the gateway on a free loopback port; yields its base URL and its live objects."""
    port = free_port()
    app = create_app(settings.model_copy(update={"port": port}))
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(20):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", app.state.gateway
    finally:
        server.should_exit = True
        await task


# stdio upstreams answer discovery the same way every time; spawning them once per run is enough.
_DISCOVERED: dict[tuple[object, ...], Discovery] = {}


@dataclass
class Upstream:
    name: str
    command: Sequence[str] | None = None
    url: str | None = None
    transport: str | None = None
    env: dict[str, str] | None = None
    headers: dict[str, str] | None = None


async def add_upstreams(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, upstreams: Sequence[Upstream]
) -> None:
    secret = settings.resolve_secret_key()
    async with sessionmaker() as session:
        await ensure_default_org(session)
        for up in upstreams:
            transport = up.transport or ("stdio" if up.command else "streamable_http")
            spec = UpstreamSpec(
                key=f"probe:{up.name}",
                name=up.name,
                transport=transport,  # type: ignore[arg-type]
                command=tuple(up.command or ()),
                env=up.env or {},
                url=up.url,
                headers=up.headers or {},
            )
            cache_key = (spec.transport, spec.command, spec.url)
            found = _DISCOVERED.get(cache_key) if spec.command else None
            if found is None:
                found = await discover(spec, timeout=30)
                _DISCOVERED[cache_key] = found
            await add_upstream(
                session,
                org_id=None,
                name=up.name,
                transport=transport,
                command=list(up.command) if up.command else None,
                url=up.url,
                env=up.env or {},
                headers=up.headers or {},
                discovery=found,
                secret=secret,
            )
        await session.commit()


async def make_server(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    name: str,
    upstreams: Sequence[str],
    plain_names: bool = False,
) -> str:
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        server = await create_server(
            session,
            org_id=org.id,
            name=name,
            upstream_slugs=list(upstreams),
            tools=None,
            plain_names=plain_names,
        )
        await session.commit()
        return server.id


async def make_key(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    *,
    server: str,
    email: str = "alice@example.com",
    allow: Sequence[tuple[str, str]] | None = None,
    expires_in: timedelta | None = None,
) -> str:
    """A new API key's secret for ``email`` (created if needed) on server ``server``."""
    from patchbay.services.servers import get_server

    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        try:
            user = await get_user(session, email=email)
        except Exception:
            user = await create_user(session, email=email, password=None, admin=False)
        srv = await get_server(session, org_id=org.id, name_or_slug=server)
        _key, secret = await create_key(
            session,
            server=srv,
            user=user,
            name="test",
            allow=list(allow) if allow is not None else None,
            expires_in=expires_in,
            secret=settings.resolve_secret_key(),
        )
        await session.commit()
        return secret


MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


def modern_tool_call(key: str, tool: str, arguments: dict[str, object], call_id: int = 1) -> dict[str, object]:
    """Keyword arguments for ``httpx.AsyncClient.post("/mcp", ...)``: one stateless 2026-07-28 tools/call."""
    return {
        "json": {
            "jsonrpc": "2.0",
            "id": call_id,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments, "_meta": MODERN_META},
        },
        "headers": {
            "Authorization": f"Bearer {key}",
            "MCP-Protocol-Version": "2026-07-28",
            "Mcp-Method": "tools/call",
            "Mcp-Name": tool,
        },
    }
