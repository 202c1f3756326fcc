"""Local tools and documents stay inside their organization; upgrading to them keeps existing tools."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.engine.runner import Limits
from patchbay.errors import NotFound
from patchbay.services.documents import create_document, get_document
from patchbay.services.local_tools import create_local_tool, find_tool
from patchbay.services.orgs import ensure_default_org
from patchbay.store import migrate
from patchbay.store.models import Organization

pytestmark = pytest.mark.anyio


async def test_another_org_can_neither_see_nor_reach_a_document_or_its_tools(db: AsyncSession) -> None:
    home = await ensure_default_org(db)
    other = Organization(name="Other", slug="other")
    db.add(other)
    await db.flush()
    await create_document(db, org_id=home.id, name="secret", value={"a": 1}, project=None, limits=Limits())
    tool = await create_local_tool(db, org_id=home.id, name="peek", document="secret", path="/a", kind="get")
    with pytest.raises(NotFound):
        await get_document(db, org_id=other.id, name="secret")
    with pytest.raises(NotFound):
        await find_tool(db, org_id=other.id, name="peek")
    with pytest.raises(NotFound):
        await find_tool(db, org_id=other.id, name=tool.id)
    with pytest.raises(NotFound):
        await create_local_tool(db, org_id=other.id, name="peek", document="secret", path="/a", kind="get")
    assert (await find_tool(db, org_id=home.id, name=tool.id)).name == "peek"


def test_upgrading_to_local_tools_keeps_existing_tools_and_attachments(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0002")
    sync = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    now = "'2026-01-01'"
    with sync.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO organizations (id, created_at, updated_at, name, slug, is_personal) "
                f"VALUES ('o1', {now}, {now}, 'O', 'o', 0)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO server_templates (id, created_at, updated_at, org_id, name, slug, description, tags, "
                f"transport, required_keys, auth_kind, visibility) VALUES ('t1', {now}, {now}, 'o1', 'T', 't', '', "
                "'[]', 'stdio', '[]', 'none', 'org')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO tools (id, created_at, updated_at, template_id, name, description, input_schema, "
                f"definition, definition_hash, status) VALUES ('x1', {now}, {now}, 't1', 'echo', '', '{{}}', '{{}}', "
                "'h', 'active')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO servers (id, created_at, updated_at, org_id, name, slug, description, status, "
                f"plain_names, revision) VALUES ('s1', {now}, {now}, 'o1', 'S', 's', '', 'running', 0, 1)"
            )
        )
        conn.execute(
            text(
                "INSERT INTO server_tools (id, created_at, updated_at, server_id, tool_id, enabled) "
                f"VALUES ('st1', {now}, {now}, 's1', 'x1', 1)"
            )
        )
    migrate.upgrade(url)
    with sync.connect() as conn:
        assert conn.execute(text("SELECT name, rate_limit FROM tools")).all() == [("echo", None)]
        assert conn.execute(text("SELECT tool_id FROM server_tools")).scalar_one() == "x1"
    sync.dispose()
