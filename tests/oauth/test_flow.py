"""The whole OAuth connection over loopback HTTP: discovery, registration, consent, callback, calls."""

from __future__ import annotations

import json
import logging

import mcp_types as types
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from sqlalchemy import select, text

from patchbay.store.models import OAuthClient, OAuthToken
from tests.oauth.conftest import World

pytestmark = pytest.mark.anyio


def _who(result: types.CallToolResult) -> dict[str, str]:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return dict(json.loads(block.text))


async def _client_row(world: World) -> OAuthClient:
    async with world.sessionmaker() as session:
        row = await session.scalar(select(OAuthClient))
        assert row is not None
        return row


async def test_a_401_upstream_is_added_as_oauth_with_a_metadata_document_client(world: World) -> None:
    added = await world.add_upstream()
    assert added.status_code == 201, added.text
    assert added.json()["auth_kind"] == "oauth"
    row = await _client_row(world)
    assert row.registration == "metadata_document"
    assert row.client_id == f"{world.url}/api/v1/oauth/client-metadata.json"
    assert row.issuer == world.provider.issuer
    assert row.resource == world.upstream_url
    assert row.scopes == ["tools.read"]  # from the upstream's challenge
    assert row.secret_ciphertext is None


async def test_dynamic_registration_is_the_fallback(world: World) -> None:
    world.provider.cimd = False
    assert (await world.add_upstream()).status_code == 201
    row = await _client_row(world)
    assert row.registration == "dynamic"
    assert row.client_id in world.provider.clients
    registered_secret = world.provider.clients[row.client_id]["client_secret"]
    assert row.secret_ciphertext is not None and registered_secret not in row.secret_ciphertext
    assert (await world.connect(world.alice)).status_code == 200


async def test_a_pre_registered_client_is_used_as_given(world: World) -> None:
    world.provider.add_client("patchbay-admin-made", "s3cret-pre", f"{world.url}/api/v1/oauth/callback")
    added = await world.add_upstream(
        oauth=True, oauth_client_id="patchbay-admin-made", oauth_client_secret="s3cret-pre"
    )
    assert added.status_code == 201, added.text
    row = await _client_row(world)
    assert (row.registration, row.client_id) == ("pre_registered", "patchbay-admin-made")
    assert row.secret_ciphertext is not None and "s3cret-pre" not in row.secret_ciphertext
    assert (await world.connect(world.alice)).status_code == 200
    # The token request authenticated with the secret (HTTP Basic), so the provider accepted it.
    assert world.provider.token_requests[-1]["grant_type"] == "authorization_code"


async def test_connect_then_a_proxied_call_carries_the_users_token(world: World) -> None:
    assert (await world.add_upstream()).status_code == 201
    done = await world.connect(world.alice)
    assert done.status_code == 200, done.text
    assert done.json() == {"upstream": "remote", "status": "connected", "scopes": ["tools.read"]}
    # The authorization request: PKCE S256 and the resource indicator; the token request: verifier and resource.
    asked = world.provider.authorize_requests[-1]
    assert asked["code_challenge_method"] == "S256" and asked["resource"] == world.upstream_url
    traded = world.provider.token_requests[-1]
    assert traded["resource"] == world.upstream_url and len(traded["code_verifier"]) >= 43
    # The provider fetched our Client ID Metadata Document from the gateway itself.
    assert world.provider.clients[asked["client_id"]]["fetched"] is True

    key = await world.server_and_key(world.alice)
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        listed = await client.list_tools()
        assert [t.name for t in listed.tools] == ["remote__whoami"]
        who = _who(await client.call_tool("remote__whoami", {}))
    assert who["sub"] == "alice@provider"
    assert who["token"] in world.provider.access  # a token the provider issued for this resource
    assert key not in world.guard.accepted  # the client's own key never went upstream


async def test_a_user_without_a_connection_sees_the_upstream_as_pending(world: World) -> None:
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    bob_key = await world.server_and_key(world.bob)
    async with Client(f"{world.url}/mcp/k/{bob_key}", mode="legacy") as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(MCPError) as caught:
            await client.call_tool("remote__whoami", {})
    link = f"{world.url}/api/v1/orgs/{world.org}/connections/remote/start"
    assert caught.value.error.code == -32042
    assert link in caught.value.error.message
    assert caught.value.error.data["connectUrl"] == link
    async with world.api(world.bob) as http:
        listed = (await http.get(f"/api/v1/orgs/{world.org}/connections")).json()
    assert [(c["upstream"], c["status"], c["connect_url"]) for c in listed] == [("remote", "pending", link)]
    for who, expected in ((world.bob, ("pending", ["remote"])), (world.alice, ("running", []))):
        async with world.api(who) as http:
            server = (await http.get(f"/api/v1/orgs/{world.org}/servers/main")).json()
        assert (server["my_status"], server["pending_connections"]) == expected


async def test_start_redirects_the_browser_to_the_provider(world: World) -> None:
    assert (await world.add_upstream()).status_code == 201
    async with world.api(world.alice) as http:
        started = await http.get(f"/api/v1/orgs/{world.org}/connections/remote/start")
    assert started.status_code == 302
    assert started.headers["location"].startswith(f"{world.provider.issuer}/authorize?")


async def test_tokens_are_never_in_plaintext_in_the_database_logs_or_api(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    key = await world.server_and_key(world.alice)
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        await client.call_tool("remote__whoami", {})
        world.provider.expire_access_tokens()
        await client.call_tool("remote__whoami", {})  # a refresh, logged
    assert world.provider.refreshes == 1
    issued = world.provider.issued
    assert len(issued) == 4
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "refreshed the OAuth token" in logged
    assert all(token not in logged for token in issued)
    async with world.sessionmaker() as session:
        conn = await session.connection()
        rows = (await conn.execute(text("SELECT * FROM oauth_tokens"))).all()
        audit = (await conn.execute(text("SELECT * FROM audit_records"))).all()
    dumped = repr(rows) + repr(audit)
    assert rows and all(token not in dumped for token in issued)
    async with world.api(world.alice) as http:
        listed = await http.get(f"/api/v1/orgs/{world.org}/connections")
    assert listed.json()[0]["status"] == "connected"
    assert all(token not in listed.text for token in issued)


async def test_disconnect_revokes_and_forgets_the_tokens(world: World) -> None:
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    refresh_token = next(iter(world.provider.refresh))
    key = await world.server_and_key(world.alice)
    async with world.api(world.alice) as http:
        gone = await http.delete(f"/api/v1/orgs/{world.org}/connections/remote")
    assert gone.status_code == 204
    assert refresh_token in world.provider.revoked
    async with world.sessionmaker() as session:
        assert (await session.scalars(select(OAuthToken))).all() == []
    async with Client(f"{world.url}/mcp/k/{key}", mode="legacy") as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("remote__whoami", {})
    assert caught.value.error.code == -32042
    async with world.sessionmaker() as session:
        events = (await (await session.connection()).execute(text("SELECT event FROM audit_records"))).scalars().all()
    assert "oauth.connected" in events and "oauth.disconnected" in events


async def test_keys_call_with_the_oauth_token_their_credential_names(world: World) -> None:
    """own → the key owner's connection; shared:NAME → the token an admin connected for everyone; org → the org's."""
    assert (await world.add_upstream()).status_code == 201
    assert (await world.connect(world.alice)).status_code == 200
    # Members may only connect their own token.
    async with world.api(world.bob) as http:
        refused = await http.post(f"/api/v1/orgs/{world.org}/connections/remote/start?credential=shared:team")
    assert refused.status_code == 403, refused.text
    world.provider.subject = "team@provider"
    assert (await world.connect(world.admin, credential="shared:team")).status_code == 200
    world.provider.subject = "org@provider"
    assert (await world.connect(world.admin, credential="org")).status_code == 200

    own = await world.server_and_key(world.alice)
    alice_team = await world.server_and_key(world.alice, credentials=[("remote", "shared:team")])
    bob_team = await world.server_and_key(world.bob, credentials=[("remote", "shared:team")])
    bob_org = await world.server_and_key(world.bob, credentials=[("remote", "org")])
    seen: dict[str, str] = {}
    for name, key in (("own", own), ("alice_team", alice_team), ("bob_team", bob_team), ("bob_org", bob_org)):
        async with Client(f"{world.url}/mcp/k/{key}") as client:
            seen[name] = _who(await client.call_tool("remote__whoami", {}))["sub"]
    assert seen == {
        "own": "alice@provider",
        "alice_team": "team@provider",
        "bob_team": "team@provider",
        "bob_org": "org@provider",
    }
    # The shared connection is listed by name, never with its token.
    async with world.api(world.admin) as http:
        names = [c["name"] for c in (await http.get(f"/api/v1/orgs/{world.org}/credentials")).json()["items"]]
    assert "team" in names
