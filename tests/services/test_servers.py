from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.servers import create_server, get_server, list_servers, set_tools_enabled
from patchbay.services.tools import list_tools, server_tools
from patchbay.store.models import Organization, ServerTool
from tests.services.conftest import TIME_TOOLS, make_upstream, tool

pytestmark = pytest.mark.anyio


@pytest.fixture
async def two_upstreams(db: AsyncSession, org: Organization, secret: bytes) -> None:
    await make_upstream(db, org=org, secret=secret, name="time", tools=TIME_TOOLS)
    await make_upstream(db, org=org, secret=secret, name="clock", tools=[tool("get_current_time"), tool("set_alarm")])


@pytest.mark.usefixtures("two_upstreams")
async def test_server_exposes_every_tool_prefixed_by_default(db: AsyncSession, org: Organization) -> None:
    server = await create_server(
        db, org_id=org.id, name="My Tools", upstream_slugs=["time", "clock"], tools=None, plain_names=False
    )
    await db.commit()
    assert server.slug == "my-tools"
    assert server.revision == 1
    names = [row.name for row in await server_tools(db, server=server)]
    assert names == [
        "clock__get_current_time",
        "clock__set_alarm",
        "time__convert_time",
        "time__get_current_time",
    ]


@pytest.mark.usefixtures("two_upstreams")
async def test_plain_names_refuse_a_clash_and_name_it(db: AsyncSession, org: Organization) -> None:
    with pytest.raises(InvalidInput, match="'get_current_time' would come from both time and clock"):
        await create_server(db, org_id=org.id, name="s", upstream_slugs=["time", "clock"], tools=None, plain_names=True)


@pytest.mark.usefixtures("two_upstreams")
async def test_plain_names_work_when_tools_avoid_the_clash(db: AsyncSession, org: Organization) -> None:
    server = await create_server(
        db,
        org_id=org.id,
        name="s",
        upstream_slugs=["time", "clock"],
        tools=["time__get_current_time", "set_alarm", "convert_time"],
        plain_names=True,
    )
    names = [row.name for row in await server_tools(db, server=server)]
    assert names == ["convert_time", "get_current_time", "set_alarm"]


@pytest.mark.usefixtures("two_upstreams")
async def test_tool_selection_errors_are_specific(db: AsyncSession, org: Organization) -> None:
    kwargs = {"org_id": org.id, "name": "s", "upstream_slugs": ["time", "clock"], "plain_names": False}
    with pytest.raises(InvalidInput, match="offered by several upstreams; write time__get_current_time or clock__"):
        await create_server(db, tools=["get_current_time"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="no active tool 'nope' in the upstreams given"):
        await create_server(db, tools=["nope"], **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="tool list is empty"):
        await create_server(db, tools=[" "], **kwargs)  # type: ignore[arg-type]


@pytest.mark.usefixtures("two_upstreams")
async def test_server_names_are_unique_and_upstreams_must_exist(db: AsyncSession, org: Organization) -> None:
    await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    with pytest.raises(Conflict, match="'s' already exists"):
        await create_server(db, org_id=org.id, name="S", upstream_slugs=[], tools=None, plain_names=False)
    with pytest.raises(NotFound, match="upstream 'nope'"):
        await create_server(db, org_id=org.id, name="t", upstream_slugs=["nope"], tools=None, plain_names=False)
    with pytest.raises(InvalidInput, match="given twice"):
        await create_server(db, org_id=org.id, name="t", upstream_slugs=["time", "TIME"], tools=None, plain_names=False)


@pytest.mark.usefixtures("two_upstreams")
async def test_enable_and_disable_by_exposed_name_bump_the_revision(db: AsyncSession, org: Organization) -> None:
    server = await create_server(db, org_id=org.id, name="s", upstream_slugs=["time"], tools=None, plain_names=False)
    await db.commit()
    rows = await set_tools_enabled(db, server=server, enable=[], disable=["time__convert_time"])
    await db.commit()
    assert {r.name: r.enabled for r in rows} == {"time__convert_time": False, "time__get_current_time": True}
    assert server.revision == 2
    await set_tools_enabled(db, server=server, enable=[], disable=["time__convert_time"])
    assert server.revision == 2, "no change, no bump"
    rows = await set_tools_enabled(db, server=server, enable=["time__convert_time"], disable=[])
    assert all(r.enabled for r in rows)
    assert server.revision == 3
    with pytest.raises(InvalidInput, match="has no tool named 'convert_time'"):
        await set_tools_enabled(db, server=server, enable=["convert_time"], disable=[])
    with pytest.raises(InvalidInput, match="both enabled and disabled"):
        await set_tools_enabled(db, server=server, enable=["time__convert_time"], disable=["time__convert_time"])


@pytest.mark.usefixtures("two_upstreams")
async def test_override_names_win_and_collisions_stay_unique(db: AsyncSession, org: Organization) -> None:
    server = await create_server(
        db, org_id=org.id, name="s", upstream_slugs=["time", "clock"], tools=None, plain_names=False
    )
    rows = {r.name: r for r in await server_tools(db, server=server)}
    attached = await db.get(ServerTool, rows["clock__set_alarm"].server_tool_id)
    assert attached is not None
    attached.override_name = "time__convert_time"
    await db.flush()
    after = await server_tools(db, server=server)
    names = {(r.upstream, r.upstream_name): r.name for r in after}
    assert names["clock", "set_alarm"] == "time__convert_time"
    assert names["time", "convert_time"].startswith("time__convert_time_")
    assert len({r.name for r in after}) == 4


@pytest.mark.usefixtures("two_upstreams")
async def test_get_and_list_servers(db: AsyncSession, org: Organization) -> None:
    await create_server(
        db, org_id=org.id, name="Team A", upstream_slugs=["time", "clock"], tools=None, plain_names=False
    )
    assert (await get_server(db, org_id=org.id, name_or_slug="team-a")).name == "Team A"
    assert (await get_server(db, org_id=org.id, name_or_slug="Team A")).slug == "team-a"
    with pytest.raises(NotFound, match="server 'b' does not exist"):
        await get_server(db, org_id=org.id, name_or_slug="b")
    [summary] = await list_servers(db, org_id=org.id)
    assert (summary.upstreams, summary.tools, summary.enabled_tools, summary.keys) == (
        ["time", "clock"],
        4,
        4,
        0,
    )


@pytest.mark.usefixtures("two_upstreams")
async def test_tool_list_across_the_catalog_and_per_server(db: AsyncSession, org: Organization) -> None:
    catalog = await list_tools(db, org_id=org.id)
    assert [(r.name, r.read_only, r.enabled) for r in catalog] == [
        ("clock__get_current_time", False, None),
        ("clock__set_alarm", False, None),
        ("time__convert_time", True, None),
        ("time__get_current_time", True, None),
    ]
    server = await create_server(
        db, org_id=org.id, name="s", upstream_slugs=["clock"], tools=["set_alarm"], plain_names=False
    )
    [row] = await list_tools(db, org_id=org.id, server=server)
    assert (row.name, row.upstream, row.upstream_name, row.enabled, row.status) == (
        "clock__set_alarm",
        "clock",
        "set_alarm",
        True,
        "active",
    )
