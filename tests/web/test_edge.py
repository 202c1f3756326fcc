"""The edge of the MCP endpoint: bad input gets a clear error, never a 5xx, and the gateway stays up."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from patchbay.app import create_app, server_config
from patchbay.settings import Settings
from patchbay.store.db import make_engine, make_sessionmaker
from tests.harness import Upstream, add_upstreams, free_port, initialize_request, make_key, make_server

TIME = Upstream(name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])
INIT = initialize_request()
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
}


@pytest.fixture
def gateway(settings: Settings) -> Iterator[tuple[str, str]]:
    """A gateway served from a thread (sync tests, hypothesis); yields (base url, key)."""

    async def provision() -> str:
        engine = make_engine(settings.effective_database_url)
        maker = make_sessionmaker(engine)
        await add_upstreams(maker, settings, [TIME])
        await make_server(maker, name="edge", upstreams=["time"])
        key = await make_key(maker, settings, server="edge")
        await engine.dispose()
        return key

    key = asyncio.run(provision())
    port = free_port()
    settings.max_body_bytes = 64 * 1024
    app = create_app(settings.model_copy(update={"port": port}))
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(2000):
        if server.started:
            ready.set()
            break
        threading.Event().wait(0.01)
    assert ready.is_set(), "gateway did not start"
    try:
        yield f"http://127.0.0.1:{port}", key
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _post(url: str, key: str, body: Any, **headers: str) -> httpx.Response:
    hdrs = {"Authorization": f"Bearer {key}", "Accept": "application/json, text/event-stream", **headers}
    if isinstance(body, bytes):
        return httpx.post(f"{url}/mcp", content=body, headers=hdrs)
    return httpx.post(f"{url}/mcp", json=body, headers=hdrs)


def test_malformed_json_is_a_parse_error(gateway: tuple[str, str]) -> None:
    url, key = gateway
    response = _post(url, key, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


def test_oversized_body_is_refused_with_413(gateway: tuple[str, str]) -> None:
    url, key = gateway
    response = _post(url, key, {"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"x": "a" * 100_000}})
    assert response.status_code == 413
    assert "larger than" in response.json()["error"]["message"]


def test_batches_and_non_jsonrpc_are_invalid_requests(gateway: tuple[str, str]) -> None:
    url, key = gateway
    for body in ([INIT], {"id": 1, "method": "ping"}, "ping", 42):
        response = _post(url, key, body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == -32600


def test_foreign_host_and_origin_are_refused(gateway: tuple[str, str]) -> None:
    url, key = gateway
    assert _post(url, key, INIT, Host="evil.example").status_code == 403
    assert _post(url, key, INIT, Origin="http://evil.example").status_code == 403
    assert _post(url, key, INIT, Origin=url).status_code == 200


def test_legacy_request_without_session_and_unknown_session(gateway: tuple[str, str]) -> None:
    url, key = gateway
    ping = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert _post(url, key, ping).status_code == 400
    assert _post(url, key, ping, **{"Mcp-Session-Id": "nope"}).status_code == 404


def test_session_is_bound_to_the_key_that_opened_it(gateway: tuple[str, str], settings: Settings) -> None:
    url, key = gateway

    async def other_key() -> str:
        engine = make_engine(settings.effective_database_url)
        secret = await make_key(make_sessionmaker(engine), settings, server="edge", email="bob@example.com")
        await engine.dispose()
        return secret

    bob = asyncio.run(other_key())
    opened = _post(url, key, INIT)
    session_id = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    assert _post(url, key, listing, **{"Mcp-Session-Id": session_id}).status_code == 200
    assert _post(url, bob, listing, **{"Mcp-Session-Id": session_id}).status_code == 404


def test_modern_header_mismatch_and_unsupported_version(gateway: tuple[str, str]) -> None:
    url, key = gateway
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {"_meta": MODERN_META}}
    ok = _post(url, key, body, **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/list"})
    assert ok.status_code == 200
    assert ok.json()["result"]["resultType"] == "complete"
    mismatch = _post(url, key, body, **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call"})
    assert mismatch.status_code == 400
    assert mismatch.json()["error"]["code"] == -32020
    future = {**MODERN_META, "io.modelcontextprotocol/protocolVersion": "2099-01-01"}
    body = {"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {"_meta": future}}
    unsupported = _post(url, key, body, **{"MCP-Protocol-Version": "2099-01-01", "Mcp-Method": "tools/list"})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["code"] == -32022
    assert unsupported.json()["error"]["data"]["supported"] == ["2026-07-28"]


def test_unknown_method_is_method_not_found(gateway: tuple[str, str]) -> None:
    url, key = gateway
    body = {"jsonrpc": "2.0", "id": 5, "method": "nope/nope", "params": {"_meta": MODERN_META}}
    response = _post(url, key, body, **{"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "nope/nope"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == -32601


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
methods = st.sampled_from(
    [
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/read",
        "prompts/get",
        "server/discover",
        "x",
    ]
)
messages = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "1.0", None]), "id": json_values, "method": methods | json_values},
    optional={"params": json_values | st.fixed_dictionaries({"_meta": json_values, "name": json_values})},
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=messages | json_values | st.binary(max_size=200))
def test_fuzzed_bodies_never_cause_a_server_error(gateway: tuple[str, str], body: Any) -> None:
    url, key = gateway
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    method = body.get("method") if isinstance(body, dict) else None
    printable = isinstance(method, str) and method.isascii() and method.isprintable()
    modern = {"MCP-Protocol-Version": "2026-07-28", "Mcp-Method": str(method)} if printable else {}
    response = _post(url, key, raw, **{"Content-Type": "application/json", **modern})
    assert response.status_code < 500, response.text
    assert _post(url, key, INIT).status_code == 200
