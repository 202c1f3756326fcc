from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.services.orgs import ensure_default_org
from patchbay.services.upstreams import add_upstream
from patchbay.settings import Settings
from tests.cli.conftest import TIME_COMMAND, Cli, dump_tables, in_db, one_error_line
from tests.services.conftest import Discovered, tool

SECRET_VALUE = "env-value-that-must-stay-secret"


def _seed_fake_upstream(settings: Settings, name: str) -> None:
    async def work(session: AsyncSession) -> None:
        org = await ensure_default_org(session)
        await add_upstream(
            session,
            org_id=org.id,
            name=name,
            transport="stdio",
            command=["fake"],
            url=None,
            env={},
            headers={},
            discovery=Discovered(tools=[tool("a")]),
            secret=settings.resolve_secret_key(),
        )

    in_db(settings, work)


def test_upstream_add_talks_to_the_server_and_keeps_env_secret(cli: Cli, settings: Settings) -> None:
    result = cli("upstream", "add", "Time", "--command", TIME_COMMAND, "--env", f"MY_TOKEN={SECRET_VALUE}")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        result.stdout.splitlines()[0],
        "  time__convert_time",
        "  time__get_current_time",
    ]
    assert result.stdout.startswith("added upstream time (stdio, mcp-time")

    listed = cli("upstream", "list", "--json")
    assert listed.exit_code == 0, listed.output
    [row] = json.loads(listed.stdout)
    assert (row["slug"], row["transport"], row["tools"]) == ("time", "stdio", 2)
    tools = json.loads(cli("tool", "list", "--json").stdout)
    assert [t["name"] for t in tools] == ["time__convert_time", "time__get_current_time"]
    assert all(t["read_only"] for t in tools)

    everything = result.output + listed.output + cli("upstream", "list").output
    assert SECRET_VALUE not in everything
    assert SECRET_VALUE not in dump_tables(settings, ["server_templates", "template_configs", "tools"])


def test_upstream_that_cannot_start_stores_nothing(cli: Cli) -> None:
    result = cli(
        "upstream",
        "add",
        "ghost",
        "--command",
        "/nonexistent/ghost-mcp --stdio",
        "--env",
        f"K={SECRET_VALUE}",
    )
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "ghost" in line
    assert SECRET_VALUE not in result.output
    assert json.loads(cli("upstream", "list", "--json").stdout) == []


def test_upstream_add_refuses_bad_input_before_connecting(cli: Cli, settings: Settings) -> None:
    cases = [
        (["--command", "x", "--url", "https://x"], "error: give exactly one of --command or --url"),
        ([], "error: give exactly one of --command or --url"),
        (["--command", "run 'unclosed"], "error: --command cannot be split: No closing quotation"),
        (
            ["--command", "run", "--env", "NOEQUALS"],
            "error: --env expects KEY=VALUE (an entry has no KEY= part)",
        ),
        (["--url", "https://x", "--header", "no colon"], 'error: --header expects "Name: value"'),
        (["--url", "ftp://x"], "error: upstream u: the URL must be http:// or https:// with a host"),
        (["--command", "run", "--transport", "carrier-pigeon"], "error: unknown transport 'carrier-pigeon'"),
    ]
    for args, expected in cases:
        result = cli("upstream", "add", "u", *args)
        assert result.exit_code == 1, (args, result.output)
        assert one_error_line(result).startswith(expected), (args, result.stderr)
    assert "NOEQUALS" not in cli("upstream", "add", "u", "--command", "run", "--env", "NOEQUALS").output

    _seed_fake_upstream(settings, "taken")
    # The name is checked before the upstream is started, so this fails at once.
    dup = cli("upstream", "add", "Taken", "--command", "/nonexistent/never-started")
    assert dup.exit_code == 1
    assert one_error_line(dup) == "error: upstream 'taken' already exists"


def test_import_adds_what_works_and_reports_what_does_not(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "claude_desktop_config.json"
    python, *args = TIME_COMMAND.split()
    config.write_text(
        json.dumps(
            {
                "mcpServers": {
                    "clock": {"command": python, "args": args, "env": {"TOKEN": "${CLOCK_TOKEN}"}},
                    "ghost": {"command": "/nonexistent/ghost-mcp"},
                }
            }
        )
    )
    result = cli("upstream", "import", str(config), env={"CLOCK_TOKEN": SECRET_VALUE})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "ok      clock: 2 tools"
    assert lines[1].startswith("failed  ghost: ")
    assert lines[2] == "imported 1 of 2 upstreams"
    assert one_error_line(result) == "error: 1 upstream could not be imported"
    assert SECRET_VALUE not in result.output
    assert [u["slug"] for u in json.loads(cli("upstream", "list", "--json").stdout)] == ["clock"]

    again = cli("upstream", "import", str(config), "--json", env={"CLOCK_TOKEN": SECRET_VALUE})
    assert again.exit_code == 1
    outcomes = {o["name"]: o for o in json.loads(again.stdout)}
    assert outcomes["clock"] == {"name": "clock", "ok": False, "error": "upstream 'clock' already exists"}


def test_import_refuses_bad_files_with_one_line(cli: Cli, tmp_path: Path) -> None:
    missing = cli("upstream", "import", str(tmp_path / "nope.json"))
    assert missing.exit_code == 1
    assert one_error_line(missing).startswith("error: cannot read ")

    broken = tmp_path / "broken.json"
    broken.write_text('{"mcpServers": {"a": {"command": "x", "args": "y"}}}')
    result = cli("upstream", "import", str(broken))
    assert result.exit_code == 1
    assert one_error_line(result) == "error: mcpServers.a.args: expected a list of strings"

    unset = tmp_path / "unset.json"
    unset.write_text('{"mcpServers": {"a": {"command": "x", "env": {"T": "${PB_TEST_UNSET_VAR}"}}}}')
    result = cli("upstream", "import", str(unset), env={"PB_TEST_UNSET_VAR": None})
    assert result.exit_code == 1
    assert "environment variable PB_TEST_UNSET_VAR is not set" in one_error_line(result)
    assert json.loads(cli("upstream", "list", "--json").stdout) == []
