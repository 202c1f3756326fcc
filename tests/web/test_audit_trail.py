"""Every MCP request leaves an audit record, and no key reaches a log line."""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.context import new_request_id
from patchbay.audit.events import AuditEvent
from patchbay.auth.principal import Principal
from patchbay.mcp.context import AuditNote
from patchbay.mcp.exchange import Outcome
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from patchbay.web.mcp_post import _audit
from tests.harness import Upstream, add_upstreams, make_key, make_server, running_gateway

pytestmark = pytest.mark.anyio

TIME = Upstream(name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])


async def test_each_request_is_audited_and_keys_stay_out_of_logs(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    await add_upstreams(sessionmaker, settings, [TIME])
    await make_server(sessionmaker, name="audited", upstreams=["time"])
    key = await make_key(sessionmaker, settings, server="audited", allow=[("time__get_current_time", "r")])
    caplog.set_level(logging.DEBUG)
    async with running_gateway(settings) as url, Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        await client.call_tool("time__get_current_time", {"timezone": "UTC"})
        with pytest.raises(MCPError):
            await client.call_tool("time__convert_time", {})
    # Leaving the gateway drains its audit queue.
    async with sessionmaker() as session:
        rows = (await session.scalars(select(AuditRecord).order_by(AuditRecord.id))).all()
    calls = [r for r in rows if r.method == "tools/call"]
    assert [(r.tool_name, r.status) for r in calls] == [
        ("time__get_current_time", "ok"),
        ("time__convert_time", "denied"),
    ]
    ok, denied = calls
    assert ok.key_prefix == key[:12]
    assert ok.channel == "mcp"
    assert ok.bytes_in > 0
    assert ok.bytes_out > 0
    assert ok.duration_ms > 0
    assert ok.user_agent
    assert ok.tool_id is not None
    assert denied.error_code == -32602
    assert {r.method for r in rows} >= {"initialize", "tools/call"}
    # The test's own SDK client logs its URL; everything the gateway side logged must not hold the key.
    client_side = ("mcp.", "httpx2", "httpcore2")
    gateway_lines = [r.getMessage() for r in caplog.records if not r.name.startswith(client_side)]
    assert gateway_lines
    assert not [line for line in gateway_lines if key[12:] in line]


def test_the_mcp_audit_event_puts_each_value_in_its_own_field() -> None:
    """The endpoint builds its event positionally: every field gets a distinct value here, so a
    value landing in its neighbour's field fails."""
    principal = Principal(
        key_id="key-id",
        key_prefix="pb_prefix",
        key_revision=1,
        org_id="org-id",
        server_id="server-id",
        server_revision=1,
        user_id="user-id",
        all_tools=True,
        grants={},
        auth_method="auth-method",
    )
    note = AuditNote(tool_name="tool-name", tool_id="tool-id", status="denied", credential="shared:team")
    new_request_id("request-id")
    before = datetime.now(UTC)
    event = _audit(
        principal,
        {"user-agent": "user-agent/1"},
        "tools/call",
        "modern",
        note,
        Outcome(http_status=403, bytes_out=22, error_code=-32602),
        11,
        time.perf_counter() - 0.005,
    )
    assert before <= event.created_at <= datetime.now(UTC)
    assert len(event.id) == 32
    assert event._replace(id="", created_at=None, duration_ms=0.0) == AuditEvent(
        id="",
        created_at=None,  # type: ignore[arg-type]
        org_id="org-id",
        server_id="server-id",
        api_key_id="key-id",
        key_prefix="pb_prefix",
        user_id="user-id",
        auth_method="auth-method",
        channel="mcp",
        transport="streamable_http_2026",
        method="tools/call",
        tool_name="tool-name",
        tool_id="tool-id",
        http_status=403,
        error_code=-32602,
        status="denied",
        duration_ms=0.0,
        bytes_in=11,
        bytes_out=22,
        user_agent="user-agent/1",
        request_id="request-id",
        credential="shared:team",
    )
    assert 5.0 <= event.duration_ms < 5000.0
