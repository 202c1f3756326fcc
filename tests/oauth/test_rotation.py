"""``patchbay secrets rotate`` re-encrypts OAuth tokens and client secrets; calls keep working."""

from __future__ import annotations

import pytest
from mcp import Client
from sqlalchemy import select

from patchbay.services.secrets import ciphertexts_by_kid, rotate
from patchbay.store.models import OAuthClient, OAuthToken
from tests.oauth.conftest import World

pytestmark = pytest.mark.anyio


async def test_rotation_moves_oauth_ciphertexts_to_the_new_key(world: World) -> None:
    world.provider.cimd = False  # dynamic registration: a client secret to rotate too
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    key = await world.server_and_key(world.alice)
    async with world.sessionmaker() as session:
        before = (
            await session.scalar(select(OAuthToken.ciphertext)),
            await session.scalar(select(OAuthClient.secret_ciphertext)),
        )
        rotation = await rotate(session, secret=world.gateway.secret)
        await session.commit()
        after = (
            await session.scalar(select(OAuthToken.ciphertext)),
            await session.scalar(select(OAuthClient.secret_ciphertext)),
        )
        by_kid = await ciphertexts_by_kid(session)
    assert rotation.rewritten == 2
    assert all(value is not None and value.startswith(rotation.kid + ":") for value in after)
    assert before != after and set(by_kid) == {rotation.kid}
    world.provider.expire_access_tokens()  # the refresh needs the rotated client secret and refresh token
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        assert not (await client.call_tool("remote__whoami", {})).is_error
    assert world.provider.refreshes == 1
