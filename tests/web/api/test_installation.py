"""Installation-wide operations over REST: key rotation and audit pruning, platform administrators only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store.models import AuditRecord, TemplateConfig
from tests.web.api.conftest import org_with, person
from tests.web.api.test_catalog import global_template

pytestmark = pytest.mark.anyio

CANARY = "canary-installation-7c1e"


async def test_rotation_and_pruning_are_for_platform_administrators(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    root = await person(sessionmaker, settings, "root@example.com", admin=True)
    owner = await person(sessionmaker, settings, "owner@example.com")
    slug = await org_with(sessionmaker, "Acme", [(owner, "owner"), (root, "admin")])
    await global_template(sessionmaker, settings)
    for path in (
        "/api/v1/installation/secrets",
        "/api/v1/installation/secrets/rotate",
        "/api/v1/installation/logs/prune",
    ):
        method = client.get if path.endswith("secrets") else client.post
        refused = await method(path, headers=owner.headers)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["error"]["code"] == "forbidden"

    before = (await client.get("/api/v1/installation/secrets", headers=root.headers)).json()
    assert before["generation"] == 0
    put = await client.put(
        f"/api/v1/orgs/{slug}/upstreams/weather/config?level=org",
        json={"headers": {"Authorization": CANARY}},
        headers=root.headers,
    )
    assert put.status_code == 200, put.text
    rotated = await client.post("/api/v1/installation/secrets/rotate", headers=root.headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["generation"] == 1 and rotated.json()["kid"] != before["kid"]
    after = (await client.get("/api/v1/installation/secrets", headers=root.headers)).json()
    assert after["generation"] == 1 and set(after["values_by_kid"]) <= {after["kid"]}
    async with sessionmaker() as session:
        for token in (await session.scalars(select(TemplateConfig.ciphertext))).all():
            assert token.startswith(after["kid"] + ":") and CANARY not in token

    # Everything older than a day goes, records of today stay, and the answer says how many went.
    async with sessionmaker() as session:
        session.add(AuditRecord(created_at=datetime.now(UTC) - timedelta(days=3), method="tools/call"))
        session.add(AuditRecord(created_at=datetime.now(UTC), method="tools/call"))
        await session.commit()
    pruned = await client.post("/api/v1/installation/logs/prune?older_than=1d", headers=root.headers)
    assert pruned.status_code == 200, pruned.text
    assert pruned.json()["records"] == 1
    async with sessionmaker() as session:
        assert (
            await session.scalar(
                select(func.count()).select_from(AuditRecord).where(AuditRecord.method == "tools/call")
            )
            == 1
        )
    unset = await client.post("/api/v1/installation/logs/prune", headers=root.headers)
    assert unset.status_code == 422 and "PATCHBAY_AUDIT_RETENTION_DAYS" in unset.json()["error"]["message"]
