"""The REST skeleton: one error shape everywhere, cursor pages, OpenAPI at /api/v1/openapi.json."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.web.api.conftest import org_with, person

pytestmark = pytest.mark.anyio


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


async def test_openapi_document_is_served_under_the_api_prefix(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/v1/orgs/{org}/servers" in paths
    assert "/api/v1/auth/login" in paths


async def test_unknown_path_and_wrong_method_answer_in_the_error_shape(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/nothing-here"), 404, "not_found")
    assert_error(await client.put("/api/v1/auth/login", json={}), 405, "method_not_allowed")


async def test_validation_errors_answer_422_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/auth/login", json={"email": "a@b.c"})
    assert_error(response, 422, "invalid_input")
    assert "password" in response.json()["error"]["message"]
    assert_error(await client.post("/api/v1/auth/login", content=b"{not json"), 422, "invalid_input")


async def test_anonymous_caller_gets_401(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/v1/orgs"), 401, "unauthenticated")
    bogus = {"authorization": "Bearer pbu_" + "x" * 43}
    assert_error(await client.get("/api/v1/me", headers=bogus), 401, "unauthenticated")


async def test_lists_page_with_a_cursor_without_repeats_or_gaps(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    for index in range(5):
        await org_with(sessionmaker, f"team {index}", [(alice, "owner")])
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/orgs", params=params, headers=alice.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"items", "next_cursor"}
        seen += [org["slug"] for org in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 6  # five shared orgs and the personal one
    assert_error(await client.get("/api/v1/orgs?cursor=nope", headers=alice.headers), 422, "invalid_input")
    assert_error(await client.get("/api/v1/orgs?limit=0", headers=alice.headers), 422, "invalid_input")


async def test_mcp_and_health_paths_still_bypass_the_api(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert response.json()["jsonrpc"] == "2.0"  # the MCP endpoint answered, not the REST API


async def test_nul_characters_are_refused_before_they_reach_the_database(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    alice = await person(sessionmaker, settings, "alice@example.com")
    slug = await org_with(sessionmaker, "Team", [(alice, "owner")])
    body = {"server": "a\u0000b"}
    response = await client.post(f"/api/v1/orgs/{slug}/keys", json=body, headers=alice.headers)
    assert_error(response, 422, "invalid_input")
    assert "NUL" in response.json()["error"]["message"]
    assert_error(await client.get(f"/api/v1/orgs/{slug}%00"), 422, "invalid_input")
    in_query = await client.get(
        f"/api/v1/orgs/{slug}/tool-reviews", params={"server": "a\u0000b"}, headers=alice.headers
    )
    assert_error(in_query, 422, "invalid_input")
