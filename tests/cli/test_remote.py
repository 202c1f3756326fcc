"""``patchbay login`` / ``api`` / ``logout`` against a real gateway served on a loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from patchbay.app import create_app, server_config
from patchbay.services.accounts import register
from patchbay.settings import Settings
from patchbay.store.db import make_engine, make_sessionmaker
from tests.cli.conftest import Cli
from tests.harness import free_port

PASSWORD = "remote control 99"


@pytest.fixture
def remote(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """A gateway with one registered user, served from a thread; yields its base URL."""

    async def provision() -> None:
        engine = make_engine(settings.effective_database_url)
        async with make_sessionmaker(engine)() as session:
            await register(session, email="ops@example.com", password=PASSWORD)
            await session.commit()
        await engine.dispose()

    asyncio.run(provision())
    port = free_port()
    app = create_app(settings.model_copy(update={"port": port}))
    server = uvicorn.Server(server_config(app, settings, host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(2000):
        if server.started:
            started.set()
            break
        started.wait(0.01)
    assert started.is_set()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_login_with_password_stores_a_private_token_and_api_uses_it(cli: Cli, remote: str, tmp_path: Path) -> None:
    env = {"PATCHBAY_CONFIG_DIR": str(tmp_path / "cfg")}
    result = cli("login", remote, "--email", "ops@example.com", input=PASSWORD + "\n", env=env)
    assert result.exit_code == 0, result.output
    assert "as ops@example.com" in result.output
    stored = tmp_path / "cfg" / "credentials.json"
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    token = json.loads(stored.read_text())["token"]
    assert token.startswith("pbu_") and PASSWORD not in stored.read_text()

    made = cli("api", "POST", "/orgs", "--json", '{"name": "Remote Team"}', env=env)
    assert made.exit_code == 0, made.output
    listed = cli("api", "GET", "orgs", env=env)
    assert {o["slug"] for o in json.loads(listed.output)["items"]} >= {"remote-team"}

    missing = cli("api", "GET", "/orgs/nowhere", env=env)
    assert missing.exit_code == 1
    assert "does not exist (404 not_found)" in missing.output

    assert cli("logout", env=env).exit_code == 0
    after = cli("api", "GET", "/orgs", env=env)
    assert after.exit_code == 1 and "not logged in" in after.output


def test_login_refuses_a_bad_token_and_a_wrong_password(cli: Cli, remote: str, tmp_path: Path) -> None:
    env = {"PATCHBAY_CONFIG_DIR": str(tmp_path / "cfg")}
    bad = cli("login", remote, "--token-stdin", input="pbu_" + "x" * 43 + "\n", env=env)
    assert bad.exit_code == 1 and "refused the token" in bad.output
    wrong = cli("login", remote, "--email", "ops@example.com", input="not it at all\n", env=env)
    assert wrong.exit_code == 1 and "login failed" in wrong.output
    assert not (tmp_path / "cfg" / "credentials.json").exists()
