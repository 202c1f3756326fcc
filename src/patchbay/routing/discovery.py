"""Ask an upstream who it is and which tools it offers (used when an upstream is added or refreshed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import UpstreamConnection, UpstreamSpec
from patchbay.routing.upstream.connect import open_connection
from patchbay.routing.upstream.http_common import make_client
from patchbay.routing.upstream.pool import UpstreamPool

# A server that keeps handing out cursors must not keep us paging forever.
MAX_PAGES = 100


@dataclass(frozen=True)
class Discovery:
    """What an upstream said about itself, with every tool it lists."""

    protocol_version: str
    server_info: JSONObject
    capabilities: JSONObject
    instructions: str | None
    tools: list[JSONObject]


async def discover(
    spec: UpstreamSpec,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - part of the interface: bounds connecting and every page
    pool: UpstreamPool | None = None,
) -> Discovery:
    """Connect to ``spec`` (through ``pool``, or a temporary connection) and list its tools."""
    try:
        async with asyncio.timeout(timeout):
            if pool is not None:
                return await _describe(await pool.connection(spec), timeout)
            client = make_client(timeout) if spec.transport != "stdio" else None
            try:
                conn = await open_connection(spec, client=client, connect_timeout=timeout)
                try:
                    return await _describe(conn, timeout)
                finally:
                    await conn.aclose()
            finally:
                if client is not None:
                    await client.aclose()
    except TimeoutError:
        raise UpstreamTimeout(f"discovery of upstream {spec.name!r} did not finish within {timeout:g} s") from None


async def _describe(conn: UpstreamConnection, seconds: float) -> Discovery:
    tools: list[JSONObject] = []
    if "tools" in conn.capabilities:
        cursor: object = None
        for _ in range(MAX_PAGES):
            response = await conn.request("tools/list", {"cursor": cursor} if cursor else None, timeout=seconds)
            error = response.get("error")
            if error is not None:
                reason = f"{error.get('message')} ({error.get('code')})"
                raise UpstreamError(f"upstream {conn.spec.name!r} refused tools/list: {reason}")
            result = response.get("result")
            page = result.get("tools") if isinstance(result, dict) else None
            if not isinstance(page, list):
                raise UpstreamError(f"upstream {conn.spec.name!r} answered tools/list without a tools list")
            tools.extend(tool for tool in page if isinstance(tool, dict))
            assert isinstance(result, dict)
            cursor = result.get("nextCursor")
            if not cursor:
                break
        else:
            raise UpstreamError(f"upstream {conn.spec.name!r} listed more than {MAX_PAGES} pages of tools")
    return Discovery(
        protocol_version=conn.protocol_version,
        server_info=conn.server_info,
        capabilities=conn.capabilities,
        instructions=conn.instructions,
        tools=tools,
    )
