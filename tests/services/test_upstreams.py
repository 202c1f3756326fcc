from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.security.crypto import DecryptionError
from patchbay.services.servers import create_server
from patchbay.services.upstreams import (
    add_upstream,
    get_upstream,
    list_upstreams,
    remove_upstream,
    sync_tools,
    tool_definition_hash,
    upstream_spec,
)
from patchbay.store.models import Organization, Server, TemplateConfig, Tool
from tests.services.conftest import TIME_TOOLS, Discovered, make_upstream, tool

pytestmark = pytest.mark.anyio


async def _dump_database(db: AsyncSession) -> str:
    """Every text value of the tables that could hold a secret, concatenated."""
    chunks: list[str] = []
    for table in ("server_templates", "template_configs", "tools", "servers", "api_keys"):
        for row in (await db.execute(text(f"SELECT * FROM {table}"))).all():
            chunks.extend(str(value) for value in row)
    return "\n".join(chunks)


async def test_add_upstream_stores_template_discovery_and_tools(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    discovery = Discovered(tools=TIME_TOOLS, instructions="Ask me the time.")
    template = await add_upstream(
        db,
        org_id=org.id,
        name="Time Server",
        transport="stdio",
        command=["uvx", "mcp-server-time"],
        url=None,
        env={},
        headers={},
        discovery=discovery,
        secret=secret,
    )
    await db.commit()
    assert template.slug == "time-server"
    assert template.command == ["uvx", "mcp-server-time"]
    assert template.protocol_version == "2025-06-18"
    assert template.server_info == {"name": "fake", "version": "1.0"}
    assert template.instructions == "Ask me the time."
    assert template.auth_kind == "none"
    tools = (await db.scalars(select(Tool).where(Tool.template_id == template.id).order_by(Tool.name))).all()
    assert [t.name for t in tools] == ["convert_time", "get_current_time"]
    assert all(t.status == "active" and t.read_only and t.last_seen_at is not None for t in tools)
    assert tools[0].definition == TIME_TOOLS[1]
    assert tools[0].definition_hash == tool_definition_hash(TIME_TOOLS[1])
    assert (await db.scalar(select(TemplateConfig.id))) is None


async def test_env_and_headers_are_encrypted_at_rest_and_decrypted_for_the_spec(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    template = await add_upstream(
        db,
        org_id=org.id,
        name="api",
        transport="streamable_http",
        command=None,
        url="https://api.example.com/mcp",
        env={"API_TOKEN": "env-secret-value-123"},
        headers={"Authorization": "Bearer header-secret-value-456"},
        discovery=Discovered(tools=[tool("search")]),
        secret=secret,
    )
    await db.commit()
    dump = await _dump_database(db)
    assert "env-secret-value-123" not in dump
    assert "header-secret-value-456" not in dump
    assert template.required_keys == ["API_TOKEN", "Authorization"]
    assert template.auth_kind == "static"
    spec = await upstream_spec(db, template=template, org_id=org.id, secret=secret)
    # Pooled per template and credential set, named by a keyed hash: no secret in the key.
    assert spec.key.startswith(f"{template.id}:") and len(spec.key) == len(template.id) + 33
    assert "secret-value" not in spec.key
    assert spec.transport == "streamable_http"
    assert spec.url == "https://api.example.com/mcp"
    assert dict(spec.env) == {"API_TOKEN": "env-secret-value-123"}
    assert dict(spec.headers) == {"Authorization": "Bearer header-secret-value-456"}
    with pytest.raises(DecryptionError):
        await upstream_spec(db, template=template, org_id=org.id, secret=b"some-other-secret-0123456789")


async def test_a_config_copied_onto_another_upstream_does_not_decrypt(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    victim = await make_upstream(db, org=org, secret=secret, name="victim", tools=[], env={"TOKEN": "t"})
    attacker = await make_upstream(db, org=org, secret=secret, name="attacker", tools=[], env={"X": "y"})
    stolen = await db.scalar(select(TemplateConfig.ciphertext).where(TemplateConfig.template_id == victim.id))
    config = await db.scalar(select(TemplateConfig).where(TemplateConfig.template_id == attacker.id))
    assert stolen is not None and config is not None
    config.ciphertext = stolen
    await db.flush()
    with pytest.raises(DecryptionError):
        await upstream_spec(db, template=attacker, org_id=org.id, secret=secret)


async def test_stdio_spec_carries_the_command(db: AsyncSession, org: Organization, secret: bytes) -> None:
    template = await make_upstream(db, org=org, secret=secret, name="time", tools=TIME_TOOLS, env={"TZ": "UTC"})
    spec = await upstream_spec(db, template=template, org_id=org.id, secret=secret)
    assert spec.transport == "stdio"
    assert spec.command == ("fake-server", "--stdio")
    assert dict(spec.env) == {"TZ": "UTC"}
    assert spec.name == "time"


async def test_same_slug_twice_in_an_org_is_a_conflict(db: AsyncSession, org: Organization, secret: bytes) -> None:
    await make_upstream(db, org=org, secret=secret, name="time", tools=[])
    with pytest.raises(Conflict, match="'time' already exists"):
        await make_upstream(db, org=org, secret=secret, name="TIME", tools=[])


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": "!!!"}, "at least one letter or digit"),
        ({"transport": "websocket"}, "unknown transport"),
        ({"command": None}, "needs a command"),
        ({"command": [""]}, "needs a command"),
        ({"url": "https://x"}, "takes a command, not a URL"),
        ({"env": {"BAD-NAME": "x"}}, "not a valid environment variable name"),
        ({"headers": {"A": "b"}}, "only apply to URL"),
        ({"transport": "sse", "command": None}, "needs a URL"),
        ({"transport": "sse", "command": None, "url": "file:///etc/passwd"}, "must be http"),
        (
            {"transport": "sse", "command": None, "url": "https://x", "headers": {"X": "a\r\nB: c"}},
            "line break",
        ),
        (
            {"transport": "sse", "command": None, "url": "https://x", "headers": {"Bad Name": "a"}},
            "header name",
        ),
    ],
)
async def test_bad_upstream_input_is_refused_before_anything_is_stored(
    db: AsyncSession, org: Organization, secret: bytes, kwargs: dict[str, object], reason: str
) -> None:
    args: dict[str, object] = {
        "name": "x",
        "transport": "stdio",
        "command": ["run"],
        "url": None,
        "env": {},
        "headers": {},
    } | kwargs
    with pytest.raises(InvalidInput, match=reason):
        await add_upstream(db, org_id=org.id, discovery=Discovered(tools=[]), secret=secret, **args)  # type: ignore[arg-type]
    await db.rollback()
    assert await list_upstreams(db, org_id=org.id) == []


async def test_discovered_tools_without_names_are_refused(db: AsyncSession, org: Organization, secret: bytes) -> None:
    with pytest.raises(InvalidInput, match="tool #2 has no name"):
        await make_upstream(db, org=org, secret=secret, name="bad", tools=[tool("a"), {"description": "x"}])
    with pytest.raises(InvalidInput, match="lists tool 'a' twice"):
        await make_upstream(db, org=org, secret=secret, name="bad", tools=[tool("a"), tool("a")])


async def test_sync_marks_missing_tools_removed_quarantines_rewritten_ones_and_bumps_servers(
    db: AsyncSession, org: Organization, secret: bytes
) -> None:
    template = await make_upstream(db, org=org, secret=secret, name="t", tools=[tool("a"), tool("b")])
    server = await create_server(db, org_id=org.id, name="s", upstream_slugs=["t"], tools=None, plain_names=False)
    await db.commit()
    before = server.revision

    result = await sync_tools(db, template=template, tools=[tool("a", description="new"), tool("c")])
    await db.commit()
    assert (result.added, result.quarantined, result.removed) == (["c"], ["a"], ["b"])
    assert server.revision == before + 1
    statuses = dict((await db.execute(select(Tool.name, Tool.status).where(Tool.template_id == template.id))).all())
    assert statuses == {"a": "quarantined", "b": "removed", "c": "active"}
    assert await db.scalar(select(Tool.description).where(Tool.name == "a")) == "the a tool", "the pin holds"

    again = await sync_tools(db, template=template, tools=[tool("a", description="new"), tool("c")])
    assert not again.any
    assert server.revision == before + 1

    back = await sync_tools(db, template=template, tools=[tool("a", description="new"), tool("b"), tool("c")])
    assert back.changed == ["b"]
    fresh = await db.get(Server, server.id)
    assert fresh is not None and fresh.revision == before + 2


async def test_get_list_and_remove(db: AsyncSession, org: Organization, secret: bytes) -> None:
    await make_upstream(db, org=org, secret=secret, name="time", tools=TIME_TOOLS)
    await make_upstream(db, org=org, secret=secret, name="alpha", tools=[tool("x")])
    summaries = await list_upstreams(db, org_id=org.id)
    assert [(s.template.slug, s.active_tools, s.servers) for s in summaries] == [
        ("alpha", 1, 0),
        ("time", 2, 0),
    ]
    assert (await get_upstream(db, slug="Time", org_id=org.id)).slug == "time"
    with pytest.raises(NotFound, match="'nope' does not exist"):
        await get_upstream(db, slug="nope", org_id=org.id)

    await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    with pytest.raises(Conflict, match="used by server"):
        await remove_upstream(db, slug="time", org_id=org.id)
    await remove_upstream(db, slug="alpha", org_id=org.id)
    await remove_upstream(db, slug="time", org_id=org.id, force=True)
    await db.commit()
    assert await list_upstreams(db, org_id=org.id) == []
    assert (await db.scalar(select(Tool.id))) is None
