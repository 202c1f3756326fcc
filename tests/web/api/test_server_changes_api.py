"""What ``patchbay server tools/upstreams/set/capture`` and ``upstream sync`` do, over REST, on a real upstream."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.fixtures.servers import running_fixture
from tests.web.api.conftest import org_with, person

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def test_admins_change_a_servers_tools_upstreams_and_options_and_sync_its_upstream(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    owner = await person(sessionmaker, settings, "owner@example.com")
    member = await person(sessionmaker, settings, "member@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner"), (member, "member")])
    base = f"/api/v1/orgs/{slug}"
    async with running_fixture("streamable-http") as url:
        added = await client.post(f"{base}/upstreams", json={"name": "fx", "url": url}, headers=owner.headers)
        assert added.status_code == 201, added.text
        created = await client.post(
            f"{base}/servers", json={"name": "main", "upstreams": ["fx"], "compact": True}, headers=owner.headers
        )
        assert created.status_code == 201, created.text
        assert (created.json()["compact"], created.json()["new_tools"]) == (True, "disabled")

        options = {"compact": False, "new_tools": "enabled", "payload_capture": False}
        refused = await client.patch(f"{base}/servers/main", json=options, headers=member.headers)
        assert refused.status_code == 403
        changed = await client.patch(f"{base}/servers/main", json=options, headers=owner.headers)
        assert changed.status_code == 200, changed.text
        got = changed.json()
        assert (got["compact"], got["new_tools"], got["payload_capture"]) == (False, "enabled", False)

        edits = {"rename": {"fx__echo": "say"}, "disable": ["fx__add"], "describe": {"fx__echo": "Says it back."}}
        assert (await client.patch(f"{base}/servers/main/tools", json=edits, headers=member.headers)).status_code == 403
        tools = await client.patch(f"{base}/servers/main/tools", json=edits, headers=owner.headers)
        assert tools.status_code == 200, tools.text
        by_name = {t["name"]: t for t in tools.json()}
        assert "say" in by_name and "fx__echo" not in by_name and by_name["fx__add"]["enabled"] is False
        detached = await client.patch(f"{base}/servers/main/tools", json={"detach": ["say"]}, headers=owner.headers)
        assert "say" not in {t["name"] for t in detached.json()}
        attached = await client.patch(
            f"{base}/servers/main/tools", json={"attach": ["fx__echo"]}, headers=owner.headers
        )
        assert attached.status_code == 200, attached.text
        assert "fx__echo" in {t["name"] for t in attached.json()}

        gone = await client.patch(f"{base}/servers/main/upstreams", json={"remove": ["fx"]}, headers=owner.headers)
        assert gone.status_code == 200 and gone.json() == []
        back = await client.patch(f"{base}/servers/main/upstreams", json={"add": ["fx"]}, headers=owner.headers)
        assert back.status_code == 200 and {t["name"] for t in back.json()} >= {"fx__echo", "fx__add"}

        assert (await client.post(f"{base}/upstreams/fx/sync", headers=member.headers)).status_code == 403
        synced = await client.post(f"{base}/upstreams/fx/sync", headers=owner.headers)
        assert synced.status_code == 200, synced.text
        assert synced.json() == {"upstream": "fx", "added": [], "changed": [], "removed": [], "quarantined": []}
    async with sessionmaker() as session:
        events = (await session.scalars(select(AuditRecord).where(AuditRecord.event.is_not(None)))).all()
    kinds = {(e.event, e.channel) for e in events}
    assert ("payload_capture.changed", "api") in kinds
    assert ("permission.changed", "api") in kinds
