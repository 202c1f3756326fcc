"""Upstream tools executed directly: REST and the CLI forward them through the routing pool, like MCP."""

from __future__ import annotations

import json
import sys

import anyio
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.services.local_tools import find_tool
from patchbay.services.orgs import add_member, ensure_default_org
from patchbay.services.tokens import create_token
from patchbay.services.tool_keys import create_tool_key
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.cli.conftest import Cli
from tests.harness import Upstream, add_upstreams, make_key, make_server, running_gateway

pytestmark = pytest.mark.anyio

TIME = Upstream(name="time", command=[sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"])
TOOL = "time__get_current_time"


def assert_time_result(body: dict[str, object]) -> None:
    assert body["isError"] is False, body
    content = body["content"]
    assert isinstance(content, list)
    assert json.loads(content[0]["text"])["timezone"] == "UTC"


async def test_an_upstream_tool_runs_over_rest_with_every_credential_and_over_the_cli(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], cli: Cli
) -> None:
    await add_upstreams(sessionmaker, settings, [TIME])
    await make_server(sessionmaker, name="clock", upstreams=["time"])
    api_key = await make_key(sessionmaker, settings, server="clock")
    secret = settings.resolve_secret_key()
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        tool = await find_tool(session, org_id=org.id, name=TOOL)
        _k, tool_key = await create_tool_key(
            session, org_id=org.id, tool=tool, name="", scopes=["read"], expires_in=None, rate_limit=None, secret=secret
        )
        user = await create_user(session, email="bob@example.com", password=None, admin=False, join_default=False)
        await add_member(session, org=org, user_id=user.id, role="member")
        _t, token = await create_token(session, user=user, name="t", expires_in=None, secret=secret)
        await session.commit()
    arguments = {"timezone": "UTC"}
    calls = [
        (f"{TOOL}/execute", {"X-API-Key": api_key}),  # the name the key's server exposes
        (f"{tool.id}/execute", {"Authorization": f"Bearer {api_key}"}),
        (f"{tool.id}/execute", {"X-Tool-Key": tool_key}),  # get_current_time is read-only: a read key may call it
        # A tool of an upstream every org can use: a member of several orgs names the one to act in.
        (f"{tool.id}/execute?org=default", {"Authorization": f"Bearer {token}"}),
    ]
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        several = await http.post(f"/api/v1/tools/{tool.id}/execute", json=arguments, headers=calls[-1][1])
        assert several.status_code == 400 and "?org=" in several.json()["error"]["message"]
        for target, headers in calls:
            answer = await http.post(f"/api/v1/tools/{target}", json=arguments, headers=headers)
            assert answer.status_code == 200, (headers, answer.text)
            assert_time_result(answer.json())
        upstream_refusal = await http.post(
            f"/api/v1/tools/{tool.id}/execute", json={"timezone": "Mars/Olympus"}, headers={"X-Tool-Key": tool_key}
        )
        assert upstream_refusal.status_code == 200 and upstream_refusal.json()["isError"] is True
    ran = await anyio.to_thread.run_sync(lambda: cli("exec", TOOL, "--arg", "timezone=UTC", "--compact"))
    assert ran.exit_code == 0, ran.output
    assert_time_result(json.loads(ran.stdout))
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditRecord.channel, AuditRecord.auth_method, AuditRecord.status).where(
                    AuditRecord.method == "tools/call"
                )
            )
        ).all()
    assert sorted(rows) == sorted(
        [
            ("api", "api_key", "ok"),
            ("api", "api_key", "ok"),
            ("api", "tool_key", "ok"),
            ("api", "user", "ok"),
            ("api", "tool_key", "ok"),
            ("cli", "operator", "ok"),
        ]
    )
