from __future__ import annotations

import json

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import hash_key
from patchbay.services.orgs import ensure_default_org
from patchbay.services.upstreams import add_upstream
from patchbay.settings import Settings
from tests.cli.conftest import Cli, dump_tables, in_db, one_error_line
from tests.services.conftest import TIME_TOOLS, Discovered, tool

KEY_TABLES = ["api_keys", "api_key_tool_permissions", "audit_records", "users", "servers", "organizations"]


@pytest.fixture
def seeded(cli: Cli, settings: Settings) -> None:
    """Two upstreams sharing a tool name, and a user."""

    async def work(session: AsyncSession) -> None:
        org = await ensure_default_org(session)
        for name, tools in [("time", TIME_TOOLS), ("clock", [tool("get_current_time"), tool("set_alarm")])]:
            await add_upstream(
                session,
                org_id=org.id,
                name=name,
                transport="stdio",
                command=["fake"],
                url=None,
                env={},
                headers={},
                discovery=Discovered(tools=tools),
                secret=settings.resolve_secret_key(),
            )

    in_db(settings, work)
    assert cli("user", "create", "alice@example.com").exit_code == 0


@pytest.mark.usefixtures("seeded")
def test_plain_names_clash_is_refused_with_the_tool_named(cli: Cli) -> None:
    result = cli("server", "create", "s", "--upstream", "time", "--upstream", "clock", "--plain-names")
    assert result.exit_code == 1
    assert "'get_current_time' would come from both time and clock" in one_error_line(result)
    assert json.loads(cli("tool", "list", "--json").stdout)[0]["enabled"] is None


@pytest.mark.usefixtures("seeded")
def test_server_create_and_tool_switches(cli: Cli) -> None:
    result = cli("server", "create", "Team A", "--upstream", "time", "--upstream", "clock", "--json")
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["slug"] == "team-a"
    assert [t["name"] for t in created["tools"]] == [
        "clock__get_current_time",
        "clock__set_alarm",
        "time__convert_time",
        "time__get_current_time",
    ]
    picked = cli("server", "create", "picked", "--upstream", "clock", "--tools", "set_alarm", "--plain-names")
    assert picked.exit_code == 0, picked.output
    assert picked.stdout.splitlines() == ["created server picked with 1 tool", "  set_alarm"]

    switched = cli("server", "tools", "team-a", "--disable", "clock__set_alarm", "--json")
    assert switched.exit_code == 0, switched.output
    assert {t["name"]: t["enabled"] for t in json.loads(switched.stdout)}["clock__set_alarm"] is False
    table = cli("server", "tools", "Team A").stdout.splitlines()
    assert table[0].split() == ["TOOL", "ENABLED", "STATUS", "ACCESS", "UPSTREAM"]
    assert ["clock__set_alarm", "no", "active", "read-write", "clock"] in [line.split() for line in table]

    unknown = cli("server", "tools", "team-a", "--enable", "set_alarm")
    assert unknown.exit_code == 1
    assert one_error_line(unknown) == "error: server 'team-a' has no tool named 'set_alarm'"
    missing = cli("server", "tools", "nope")
    assert missing.exit_code == 1
    assert one_error_line(missing) == "error: server 'nope' does not exist"


@pytest.mark.usefixtures("seeded")
def test_key_secret_is_printed_once_on_the_last_line_and_stored_only_hashed(cli: Cli, settings: Settings) -> None:
    assert cli("server", "create", "s", "--upstream", "time").exit_code == 0
    result = cli("key", "create", "--server", "s", "--user", "alice@example.com", "--name", "ci", "--expires-in", "30d")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    secret = lines[-1]
    assert secret.startswith("pb_") and " " not in secret
    assert result.stdout.count(secret) == 1
    assert secret not in result.stderr
    assert lines[0].startswith("created key pb_")

    dump = dump_tables(settings, KEY_TABLES)
    assert secret not in dump
    assert hash_key(secret, settings.resolve_secret_key()) in dump

    listed = cli("key", "list")
    assert secret not in listed.output
    assert " ci " in listed.stdout and "active" in listed.stdout

    as_json = cli("key", "create", "--server", "s", "--user", "alice@example.com", "--json")
    first, last = as_json.stdout.splitlines()
    meta = json.loads(first)
    assert last.startswith(meta["prefix"])
    assert "secret" not in meta and last not in first

    revoked = cli("key", "revoke", meta["prefix"])
    assert revoked.exit_code == 0, revoked.output
    assert revoked.stdout.strip() == f"revoked key {meta['prefix']}"
    twice = cli("key", "revoke", meta["prefix"])
    assert twice.exit_code == 1
    assert one_error_line(twice).startswith(f"error: key {meta['prefix']} is already revoked")
    states = {k["prefix"]: k["state"] for k in json.loads(cli("key", "list", "--server", "s", "--json").stdout)}
    assert states[meta["prefix"]] == "revoked"
    assert list(states.values()).count("active") == 1


@pytest.mark.usefixtures("seeded")
def test_key_allow_lists_are_checked(cli: Cli) -> None:
    assert cli("server", "create", "s", "--upstream", "time", "--upstream", "clock").exit_code == 0
    base = ["key", "create", "--server", "s", "--user", "alice@example.com"]
    cases = [
        (
            ["--allow", "clock__set_alarm:r"],
            "error: tool clock__set_alarm is not read-only; use clock__set_alarm:rw",
        ),
        (["--allow", "set_alarm"], "error: server 's' has no tool named 'set_alarm'"),
        (
            ["--allow", "clock__set_alarm:x"],
            "error: --allow 'clock__set_alarm:x': write TOOL, TOOL:r or TOOL:rw",
        ),
        (["--expires-in", "30x"], "error: '30x' is not a duration"),
        (["--expires-in", "0d"], "error: duration '0d' must be longer than zero"),
    ]
    for args, expected in cases:
        result = cli(*base, *args)
        assert result.exit_code == 1, (args, result.output)
        assert one_error_line(result).startswith(expected), (args, result.stderr)
        assert result.stdout == ""
    assert json.loads(cli("key", "list", "--json").stdout) == []

    ok = cli(*base, "--allow", "time__get_current_time:r", "--allow", "clock__set_alarm", "--json")
    assert ok.exit_code == 0, ok.output
    meta = json.loads(ok.stdout.splitlines()[0])
    assert meta["tools"] == {"time__get_current_time": "r", "clock__set_alarm": "rw"}
    stranger = cli("key", "create", "--server", "s", "--user", "nobody@example.com")
    assert stranger.exit_code == 1
    assert one_error_line(stranger) == "error: user nobody@example.com does not exist"
