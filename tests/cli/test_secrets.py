"""``patchbay secrets rotate``: every stored value moves to a new key; old ciphertexts stay readable meanwhile."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.security.crypto import Keyring, decrypt_json
from patchbay.services.orgs import ensure_default_org
from patchbay.services.upstreams import add_upstream, config_context, store_config, upstream_spec
from patchbay.services.users import create_user
from patchbay.settings import Settings
from patchbay.store.models import ServerTemplate, TemplateConfig
from tests.cli.conftest import Cli, in_db
from tests.services.conftest import Discovered, tool

ORG_VALUE = "org-secret-value-1"
USER_VALUE = "user-secret-value-2"


def seed(settings: Settings) -> list[TemplateConfig]:
    secret = settings.resolve_secret_key()

    async def work(session: AsyncSession) -> list[TemplateConfig]:
        org = await ensure_default_org(session)
        template = await add_upstream(
            session,
            org_id=org.id,
            name="vault",
            transport="streamable_http",
            command=None,
            url="https://vault.invalid/mcp",
            env={},
            headers={"Authorization": ORG_VALUE},
            discovery=Discovered(tools=[tool("read", read_only=True)]),
            secret=secret,
        )
        user = await create_user(session, email="ada@example.com", password=None, admin=False)
        await store_config(
            session,
            template=template,
            org_id=org.id,
            env={"TOKEN": USER_VALUE},
            headers={},
            secret=secret,
            user_id=user.id,
        )
        return list((await session.scalars(select(TemplateConfig))).all())

    return in_db(settings, work)


def test_rotate_reencrypts_every_value_under_a_new_key_and_keeps_them_readable(cli: Cli, settings: Settings) -> None:
    secret = settings.resolve_secret_key()
    before = seed(settings)
    old_kid = Keyring(secret).current_kid
    assert {c.ciphertext.partition(":")[0] for c in before} == {old_kid}

    result = cli("secrets", "rotate", "--json")
    assert result.exit_code == 0, result.output
    done = json.loads(result.output)
    assert done["generation"] == 1 and done["rewritten"] == 2 and done["kid"] != old_kid

    async def after(session: AsyncSession) -> tuple[list[TemplateConfig], dict[str, str]]:
        configs = list((await session.scalars(select(TemplateConfig))).all())
        template = await session.scalar(select(ServerTemplate))
        assert template is not None
        spec = await upstream_spec(session, template=template, org_id=template.org_id, secret=secret)
        return configs, dict(spec.headers)

    configs, headers = in_db(settings, after)
    assert {c.ciphertext.partition(":")[0] for c in configs} == {done["kid"]}
    assert headers == {"Authorization": ORG_VALUE}
    # A gateway that read a ciphertext just before the rotation can still open it: no downtime.
    for old in before:
        context = config_context(old.template_id, old.org_id, old.user_id)
        assert decrypt_json(old.ciphertext, secret, context=context)

    status = json.loads(cli("secrets", "status", "--json").output)
    assert status == {"generation": 1, "kid": done["kid"], "values_by_kid": {done["kid"]: 2}}
    again = json.loads(cli("secrets", "rotate", "--json").output)
    assert again["generation"] == 2 and again["rewritten"] == 2


def test_values_written_after_a_rotation_use_the_new_key(cli: Cli, settings: Settings) -> None:
    seed(settings)
    done = json.loads(cli("secrets", "rotate", "--json").output)
    secret = settings.resolve_secret_key()

    async def write(session: AsyncSession) -> str:
        template = await session.scalar(select(ServerTemplate))
        assert template is not None
        config = await store_config(
            session, template=template, org_id=template.org_id, env={}, headers={"X-New": "v"}, secret=secret
        )
        return config.ciphertext

    assert in_db(settings, write).partition(":")[0] == done["kid"]
