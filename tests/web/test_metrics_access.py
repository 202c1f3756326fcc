"""Who may scrape ``/metrics``: loopback clients by default, anyone with ``PATCHBAY_METRICS_TOKEN`` when set."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from patchbay.app import create_app
from patchbay.runtime import Gateway, build_gateway
from patchbay.settings import Settings

pytestmark = pytest.mark.anyio


async def _status(settings: Settings, gw: Gateway, client: str, headers: dict[str, str] | None = None) -> int:
    transport = httpx.ASGITransport(app=create_app(settings, gateway=gw), client=(client, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
        response = await http.get("/metrics", headers=headers)
    if response.status_code == 200:
        assert "patchbay_audit_queue_depth" in response.text
    return response.status_code


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    gw = build_gateway(settings)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.aclose()


async def test_without_a_token_only_loopback_clients_scrape(settings: Settings, gateway: Gateway) -> None:
    assert await _status(settings, gateway, "127.0.0.1") == 200
    assert await _status(settings, gateway, "::1") == 200
    assert await _status(settings, gateway, "10.1.2.3") == 403
    assert await _status(settings, gateway, "203.0.113.9", {"authorization": "Bearer anything"}) == 403


async def test_with_a_token_every_client_needs_it(settings: Settings, gateway: Gateway) -> None:
    token = "scrape-token-0123456789"
    guarded = settings.model_copy(update={"metrics_token": token})
    gateway.settings = guarded
    assert await _status(guarded, gateway, "10.1.2.3", {"authorization": f"Bearer {token}"}) == 200
    assert await _status(guarded, gateway, "127.0.0.1", {"authorization": f"Bearer {token}"}) == 200
    assert await _status(guarded, gateway, "127.0.0.1") == 403
    assert await _status(guarded, gateway, "10.1.2.3", {"authorization": f"Bearer {token}x"}) == 403
    assert await _status(guarded, gateway, "10.1.2.3", {"authorization": token}) == 403
