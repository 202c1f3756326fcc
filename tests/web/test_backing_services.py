"""A shared store that goes away: requests get a clear 503, the gateway stays up and recovers."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, initialize_request, make_key, make_server, running_gateway
from tests.state.support import flaky_proxy

pytestmark = pytest.mark.anyio


async def test_redis_outage_is_a_503_and_the_gateway_recovers(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    headers = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream"}
    async with flaky_proxy("redis://127.0.0.1:6379/0") as proxy:
        shared = settings.model_copy(update={"redis_url": proxy.url})
        async with running_gateway(shared) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
            assert (await http.post("/mcp", json=initialize_request(), headers=headers)).status_code == 200
            proxy.set_mode("down")
            refused = await http.post("/mcp", json=initialize_request(), headers=headers)
            assert refused.status_code == 503
            assert "shared store is unavailable" in refused.json()["error"]["message"]
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).status_code == 503
            proxy.set_mode("up")
            recovered = await http.post("/mcp", json=initialize_request(), headers=headers)
            assert recovered.status_code == 200
