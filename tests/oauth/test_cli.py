"""``patchbay upstream add`` detects an OAuth upstream; ``patchbay connection`` lists, links and removes."""

from __future__ import annotations

import json

import anyio.to_thread
import pytest
from typer.testing import CliRunner, Result

from patchbay.cli import app
from tests.cli.conftest import cli_env
from tests.oauth.conftest import World

pytestmark = pytest.mark.anyio


async def _cli(world: World, *args: str) -> Result:
    # The gateway's public URL, as a deployment sets it: redirect URI and client id live under it.
    env = cli_env(world.settings) | {"PATCHBAY_PUBLIC_URL": world.url}
    return await anyio.to_thread.run_sync(lambda: CliRunner().invoke(app, ["--org", world.org, *args], env=env))


async def test_cli_adds_an_oauth_upstream_and_manages_a_users_connection(world: World) -> None:
    added = await _cli(world, "upstream", "add", "remote", "--url", world.upstream_url)
    assert added.exit_code == 0, added.output
    assert "added OAuth upstream remote" in added.output
    link = await _cli(world, "connection", "start", "remote")
    assert link.output.strip() == f"{world.url}/api/v1/orgs/{world.org}/connections/remote/start"
    pending = await _cli(world, "connection", "list", "--user", world.alice.email, "--json")
    assert [c["status"] for c in json.loads(pending.output)] == ["pending"]

    assert (await world.connect(world.alice)).status_code == 200
    listed = await _cli(world, "connection", "list", "--user", world.alice.email, "--json")
    (row,) = json.loads(listed.output)
    assert (row["upstream"], row["status"], row["scopes"]) == ("remote", "connected", ["tools.read"])
    assert all(token not in listed.output for token in world.provider.issued)

    refresh_token = next(iter(world.provider.refresh))
    removed = await _cli(world, "connection", "remove", "remote", "--user", world.alice.email)
    assert removed.exit_code == 0, removed.output
    assert refresh_token in world.provider.revoked
