"""Security events and request ids: who tried what, with which credential, traceable to log lines."""

from __future__ import annotations

import io
import logging

import httpx
import orjson
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.context import new_request_id
from patchbay.logs import JsonFormatter, RedactingFilter
from patchbay.services.keys import revoke_key
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import get_server, set_tools_enabled
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, modern_tool_call, running_gateway

pytestmark = pytest.mark.anyio


async def _records(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditRecord]:
    async with sessionmaker() as session:
        return list((await session.scalars(select(AuditRecord).order_by(AuditRecord.id))).all())


async def test_failed_authentication_on_mcp_is_recorded_with_the_key_prefix_only(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    bogus = "pb_" + "Zq9" * 14
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url) as http:
        wrong = await http.post("/mcp", json={}, headers={"Authorization": f"Bearer {bogus}", "User-Agent": "probe"})
        missing = await http.post("/mcp", json={}, headers={"X-Request-Id": "req-from-the-caller-1"})
    assert (wrong.status_code, missing.status_code) == (401, 401)
    rows = [r for r in await _records(sessionmaker) if r.event == "auth.failed"]
    assert [(r.key_prefix, r.status, r.http_status, r.channel) for r in rows] == [
        (bogus[:12], "denied", 401, "mcp"),
        (None, "denied", 401, "mcp"),
    ]
    assert rows[0].user_agent == "probe"
    assert rows[0].request_id and rows[0].request_id != rows[1].request_id
    assert rows[1].request_id == "req-from-the-caller-1"
    assert not [r for r in rows if bogus in repr(vars(r))]


async def test_every_call_carries_a_request_id_and_a_malformed_one_is_replaced(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        first = modern_tool_call(key, "fx__echo", {"text": "a"})
        first["headers"]["X-Request-Id"] = "abcdef-0123456789"  # type: ignore[index]
        second = modern_tool_call(key, "fx__echo", {"text": "b"})
        second["headers"]["X-Request-Id"] = "bad id {with} spaces"  # type: ignore[index]
        for call in (first, second):
            assert (await http.post("/mcp", **call)).status_code == 200  # type: ignore[arg-type]
    calls = [r for r in await _records(sessionmaker) if r.method == "tools/call"]
    assert calls[0].request_id == "abcdef-0123456789"
    assert calls[1].request_id is not None
    assert len(calls[1].request_id) == 16
    assert " " not in calls[1].request_id


async def test_creating_and_revoking_a_key_and_disabling_a_tool_are_security_events(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    async with sessionmaker() as session:
        await revoke_key(session, prefix=key[:12])
        org = await ensure_default_org(session)
        server = await get_server(session, org_id=org.id, name_or_slug="main")
        await set_tools_enabled(session, server=server, enable=[], disable=["fx__echo"])
        await session.commit()
    events = [(r.event, r.key_prefix, r.channel, r.detail) for r in await _records(sessionmaker) if r.event]
    assert events == [
        ("key.created", key[:12], "cli", None),
        ("key.revoked", key[:12], "cli", None),
        ("permission.changed", None, "cli", "tool disabled"),
    ]
    changed = next(r for r in await _records(sessionmaker) if r.event == "permission.changed")
    assert changed.tool_name == "fx__echo"
    assert changed.server_id is not None


async def test_a_security_event_rolled_back_with_its_change_leaves_no_record(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    async with sessionmaker() as session:
        await revoke_key(session, prefix=key[:12])
        await session.rollback()
    assert [r.event for r in await _records(sessionmaker) if r.event] == ["key.created"]


async def test_json_log_lines_carry_the_request_id_and_no_key() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("patchbay.test.jsonlog")
    log.addHandler(handler)
    log.propagate = False
    try:
        rid = new_request_id()
        log.warning("upstream refused key %s", "pb_" + "k" * 40)
    finally:
        log.removeHandler(handler)
    line = orjson.loads(stream.getvalue())
    assert line["request_id"] == rid
    assert line["level"] == "WARNING"
    assert "k" * 20 not in line["message"]
