"""``patchbay credential`` and ``key create/update --credential``: names in, values never out."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.services.orgs import ensure_default_org
from patchbay.services.upstreams import add_upstream
from patchbay.settings import Settings
from patchbay.store.models import ApiKey, AuditRecord, SharedCredential
from tests.cli.conftest import Cli, in_db, one_error_line
from tests.services.conftest import Discovered, tool

TOKEN = "cli-canary-bearer-5d20c1"
# Long enough that a ciphertext cannot contain it by chance (a two-letter value did, ~4 % of runs).
ENV_VALUE = "cli-canary-env-9b41e7"


@pytest.fixture
def seeded(cli: Cli, settings: Settings) -> None:
    """An HTTP upstream and a stdio one on one server, and a user."""

    async def work(session: AsyncSession) -> None:
        org = await ensure_default_org(session)
        for name, transport, url, command in [
            ("web", "streamable_http", "http://127.0.0.1:9/mcp", None),
            ("local", "stdio", None, ["fake"]),
        ]:
            await add_upstream(
                session,
                org_id=org.id,
                name=name,
                transport=transport,
                command=command,
                url=url,
                env={},
                headers={},
                discovery=Discovered(tools=[tool(f"{name}_tool")]),
                secret=settings.resolve_secret_key(),
            )

    in_db(settings, work)
    assert cli("user", "create", "alice@example.com").exit_code == 0
    assert cli("server", "create", "main", "--upstream", "web", "--upstream", "local").exit_code == 0


@pytest.mark.usefixtures("seeded")
def test_credential_add_list_remove_never_show_values(cli: Cli, settings: Settings) -> None:
    added = cli("credential", "add", "web", "bot", "--bearer-stdin", "--header", "X-Team: t1", input=TOKEN + "\n")
    assert added.exit_code == 0, added.output
    assert TOKEN not in added.output and "t1" not in added.output
    assert cli("credential", "add", "local", "ci", "--env", f"API_TOKEN={ENV_VALUE}").exit_code == 0
    listed = json.loads(cli("credential", "list", "--json").stdout)
    assert [(c["upstream"], c["name"], c["env"], c["headers"]) for c in listed] == [
        ("local", "ci", {"API_TOKEN": "set"}, {}),
        ("web", "bot", {}, {"Authorization": "set", "X-Team": "set"}),
    ]
    table = cli("credential", "list").stdout
    assert "bot" in table and TOKEN not in table
    # A header means nothing to a local process, an env var nothing to an HTTP server.
    assert "give env vars" in one_error_line(cli("credential", "add", "local", "x", "--header", "A: b"))
    assert "give headers" in one_error_line(cli("credential", "add", "web", "x", "--env", "A=b"))
    assert "name" in one_error_line(cli("credential", "add", "web", "Bad Name", "--header", "A: b"))
    assert cli("credential", "remove", "web", "bot").exit_code == 0
    assert "has no shared credential 'bot'" in one_error_line(cli("credential", "remove", "web", "bot"))

    async def stored(session: AsyncSession) -> list[str]:
        return list((await session.scalars(select(SharedCredential.ciphertext))).all())

    assert all(TOKEN not in c and ENV_VALUE not in c for c in in_db(settings, stored))


@pytest.mark.usefixtures("seeded")
def test_key_create_and_update_choose_credentials(cli: Cli, settings: Settings) -> None:
    assert cli("credential", "add", "web", "bot", "--bearer-stdin", input=TOKEN + "\n").exit_code == 0
    created = cli(
        "key", "create", "--server", "main", "--user", "alice@example.com",
        "--credential", "web=shared:bot", "--credential", "local=org", "--json",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    meta = json.loads(created.stdout.splitlines()[0])
    assert meta["credentials"] == {"web": "shared:bot", "local": "org"} and meta["shared"] is False
    prefix = meta["prefix"]

    updated = cli("key", "update", prefix, "--credential", "web=own", "--json")
    assert json.loads(updated.stdout)["credentials"] == {"web": "own"}
    reset = cli("key", "update", prefix, "--default-credentials", "--json")
    assert json.loads(reset.stdout)["credentials"] == {}
    assert "default" in cli("key", "list").stdout

    # A shared key takes shared credentials only, and at least one.
    base = ["key", "create", "--server", "main", "--user", "alice@example.com", "--shared"]
    assert "needs a shared credential" in one_error_line(cli(*base))
    assert "shared credentials only" in one_error_line(cli(*base, "--credential", "web=own"))
    shared = cli(*base, "--credential", "web=shared:bot", "--json")
    assert shared.exit_code == 0, shared.output
    assert json.loads(shared.stdout.splitlines()[0])["shared"] is True
    shared_prefix = json.loads(shared.stdout.splitlines()[0])["prefix"]
    assert "shared credentials only" in one_error_line(cli("key", "update", shared_prefix, "--credential", "web=org"))

    assert "has no upstream 'nope'" in one_error_line(cli(*base[:-1], "--credential", "nope=own"))
    assert "has no shared credential 'ghost'" in one_error_line(cli(*base[:-1], "--credential", "web=shared:ghost"))
    assert "write own, org or shared:NAME" in one_error_line(cli(*base[:-1], "--credential", "web=theirs"))
    assert "UPSTREAM=own" in one_error_line(cli(*base[:-1], "--credential", "web"))
    # In use by an active key: not removable.
    assert "used by key(s)" in one_error_line(cli("credential", "remove", "web", "bot"))

    async def facts(session: AsyncSession) -> tuple[bool, list[str | None]]:
        key = await session.scalar(select(ApiKey).where(ApiKey.prefix == shared_prefix))
        assert key is not None
        details = await session.scalars(select(AuditRecord.detail).where(AuditRecord.event == "credential.changed"))
        return key.shared, list(details)

    is_shared, details = in_db(settings, facts)
    assert is_shared
    assert "web=own" in details and "default" in details
    assert all(TOKEN not in (d or "") for d in details)
