from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from patchbay.settings import Settings
from tests.cli.conftest import Cli, cli_env, one_error_line


def test_a_missing_option_is_one_usage_line_with_exit_2(cli: Cli) -> None:
    result = cli("key", "create", "--user", "a@example.com")
    assert result.exit_code == 2
    assert one_error_line(result) == "error: patchbay key create: Missing option '--server'."
    assert result.stdout == ""


def test_an_unknown_command_is_one_usage_line(cli: Cli) -> None:
    result = cli("upstream", "frobnicate", "x")
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in one_error_line(result)


def test_an_unknown_org_is_refused(cli: Cli) -> None:
    result = cli("--org", "acme", "upstream", "list")
    assert result.exit_code == 1
    assert one_error_line(result) == "error: organization 'acme' does not exist"


def test_a_placeholder_secret_key_is_refused(cli: Cli) -> None:
    result = cli("upstream", "list", env={"PATCHBAY_SECRET_KEY": "changeme"})
    assert result.exit_code == 1
    assert "PATCHBAY_SECRET_KEY is a placeholder" in one_error_line(result)


def test_a_bad_setting_is_named(cli: Cli) -> None:
    result = cli("upstream", "list", env={"PATCHBAY_PORT": "eighty"})
    assert result.exit_code == 1
    assert one_error_line(result).startswith("error: setting port:")


def test_db_upgrade_reports_the_revision(cli: Cli, settings: Settings) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("database at revision ")
    password = make_url(settings.effective_database_url).password
    assert password is None or str(password) not in result.stdout


def test_serve_builds_settings_from_its_options(
    cli: Cli, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Settings] = []
    import patchbay.app

    def fake_serve(got: Settings) -> Any:
        seen.append(got)

    monkeypatch.setattr(patchbay.app, "serve", fake_serve)
    result = cli("serve", "--host", "0.0.0.0", "--port", "9000", "--data-dir", str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    [got] = seen
    assert (got.host, got.port, got.home) == ("0.0.0.0", 9000, tmp_path / "state")

    seen.clear()
    result = cli("--data-dir", str(tmp_path / "root"), "serve", env={"PATCHBAY_PORT": "8500"})
    assert result.exit_code == 0, result.output
    [got] = seen
    assert (got.host, got.port, got.home) == ("127.0.0.1", 8500, tmp_path / "root")


def test_the_installed_command_reports_errors_in_one_line(settings: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATCHBAY_")}
    env |= {k: v for k, v in cli_env(settings).items() if v is not None}
    usage = subprocess.run(
        [sys.executable, "-m", "patchbay", "key", "revoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert usage.returncode == 2
    assert usage.stderr.strip() == "error: patchbay key revoke: Missing argument 'prefix'."
    missing = subprocess.run(
        [sys.executable, "-m", "patchbay", "key", "revoke", "pb_doesnotexist"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no key with prefix 'pb_doesnotexist'"
    assert missing.stdout == ""
