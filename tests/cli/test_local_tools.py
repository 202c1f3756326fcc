"""``patchbay doc``, ``tool create``, ``toolkey`` and ``exec``: documents, local tools and their keys from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import hash_key
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.cli.conftest import Cli, dump_tables, in_db, one_error_line
from tests.state.support import require_redis

SHOP = '{"items": [{"name": "apple", "price": 3}], "meta": {"owner": "ann"}}'


@pytest.fixture
def shop(cli: Cli) -> None:
    assert cli("doc", "create", "shop", "--json", SHOP).exit_code == 0
    for name, path, kind in [("find", "/items", "query"), ("add", "/items", "create"), ("meta", "/meta", "get")]:
        created = cli("tool", "create", name, "--doc", "shop", "--path", path, "--type", kind)
        assert created.exit_code == 0, created.output


def test_documents_are_created_shown_listed_replaced_and_deleted(cli: Cli, tmp_path: Path) -> None:
    created = cli("doc", "create", "Price List", "--json", '{"a": [1, 2]}', "--project", "Sales")
    assert created.exit_code == 0, created.output
    assert created.stdout.strip() == "created document price-list (version 1, 11 bytes)"
    assert json.loads(cli("doc", "show", "price-list").stdout) == {"a": [1, 2]}
    assert cli("doc", "show", "Price List", "--path", "/a/1", "--compact").stdout.strip() == "2"
    listed = json.loads(cli("doc", "list", "--json").stdout)
    assert [(d["slug"], d["project"], d["version"]) for d in listed] == [("price-list", "sales", 1)]
    source = tmp_path / "new.json"
    source.write_text('{"b": true}')
    replaced = cli("doc", "replace", "price-list", "--file", str(source), "--version", "1")
    assert replaced.stdout.strip() == "replaced document price-list (version 2, 10 bytes)"
    stale = cli("doc", "replace", "price-list", "--json", "{}", "--version", "1")
    assert one_error_line(stale) == "error: document price-list changed: it is at version 2, not 1"
    # A version no document can reach (beyond the 32-bit column) is a conflict, not a database error.
    beyond = cli("doc", "replace", "price-list", "--json", "{}", "--version", str(2**31))
    assert one_error_line(beyond) == f"error: document price-list changed: it is at version 2, not {2**31}"
    assert cli("doc", "delete", "price-list").exit_code == 0
    assert cli("doc", "list").stdout.strip() == "no documents"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["doc", "create", "x", "--json", "{nope"], "error: the document is not valid JSON"),
        (["doc", "create", "x"], "error: give the value with exactly one of --json and --file"),
        (["doc", "create", "shop", "--json", "{}"], "error: document 'shop' already exists"),
        (["doc", "show", "nope"], "error: document 'nope' does not exist"),
        (["doc", "show", "shop", "--path", "items"], "error: JSON pointer 'items' must be empty or start with '/'"),
        (["doc", "delete", "shop"], "error: document shop has tools (add, find, meta); delete them first"),
        (["tool", "create", "t", "--doc", "shop", "--path", "/nope", "--type", "get"], "has no value at /nope"),
        (["tool", "create", "t", "--doc", "shop", "--path", "/items", "--type", "grep"], "tool type must be one of"),
        (["tool", "create", "find", "--doc", "shop", "--path", "/meta", "--type", "get"], "'find' already exists"),
        (["tool", "create", "t", "--doc", "shop", "--path", "/items", "--type", "query"], "'find' is already the"),
        (["tool", "create", "a b", "--doc", "shop", "--path", "/items", "--type", "get"], "must be 1-128 characters"),
        (["exec", "nope"], "error: tool 'nope' does not exist"),
        (["exec", "find", "--json", "[1]"], "error: --json must be a JSON object of arguments"),
        (["exec", "find", "--arg", "novalue"], "error: --arg 'novalue': write KEY=VALUE"),
        (["exec", "find"], "'expression' is a required property"),
        (["exec", "find", "--key", "pb_not-a-real-key-at-all"], "error: unknown API key"),
        (["toolkey", "create", "find", "--scope", "root"], "error: scope must be one of execute, read, admin"),
    ],
)
@pytest.mark.usefixtures("shop")
def test_bad_input_exits_1_with_one_line(cli: Cli, args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.exit_code == 1, result.output
    assert message in one_error_line(result)


@pytest.mark.usefixtures("shop")
def test_exec_prints_the_result_and_parses_arguments_by_the_schema(cli: Cli) -> None:
    found = cli("exec", "find", "--arg", "expression=[0].price", "--compact")
    assert found.exit_code == 0, found.output
    assert json.loads(found.stdout) == {"result": 3, "version": 1}
    added = cli("exec", "add", "--json", '{"value": {"name": "x"}}', "--arg", "value=42", "--compact")
    assert json.loads(added.stdout) == {"index": 1, "value": 42, "version": 2}
    assert json.loads(cli("doc", "show", "shop", "--path", "/items/1").stdout) == 42


@pytest.mark.usefixtures("shop")
def test_a_tool_key_is_shown_once_stored_hashed_and_scoped(cli: Cli, settings: Settings) -> None:
    made = cli("toolkey", "create", "meta", "--scope", "read", "--name", "ci")
    assert made.exit_code == 0, made.output
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("tk_") and len(secret) >= 46  # 32 random bytes
    stored = dump_tables(settings, ["tool_access_keys"])
    assert secret not in stored
    assert hash_key(secret, settings.resolve_secret_key()) in stored
    ok = cli("exec", "meta", "--key", secret, "--compact")
    assert json.loads(ok.stdout) == {"value": {"owner": "ann"}, "version": 1}
    other = cli("exec", "find", "--key", secret, "--arg", "expression=@")
    assert one_error_line(other) == f"error: tool key {secret[:12]} is for another tool, not 'find'"

    writer = cli("toolkey", "create", "add", "--scope", "read").stdout.strip().splitlines()[-1]
    refused = cli("exec", "add", "--key", writer, "--json", '{"value": 1}')
    assert "may only call read-only tools, and 'add' is not" in one_error_line(refused)

    listed = json.loads(cli("toolkey", "list", "meta", "--json").stdout)
    assert [(k["prefix"], k["scopes"], k["state"]) for k in listed] == [(secret[:12], ["read"], "active")]
    assert listed[0]["last_used_at"] is not None
    assert cli("toolkey", "revoke", secret[:12]).exit_code == 0
    revoked = cli("exec", "meta", "--key", secret)
    assert one_error_line(revoked) == f"error: tool key {secret[:12]} was revoked"


@pytest.mark.usefixtures("shop")
def test_an_api_key_calls_a_tool_by_the_name_its_server_exposes(cli: Cli) -> None:
    assert cli("server", "create", "docs").exit_code == 0
    assert cli("tool", "attach", "find", "--server", "docs", "--name", "search").exit_code == 0
    assert cli("user", "create", "ann@example.com").exit_code == 0
    key = cli("key", "create", "--server", "docs", "--user", "ann@example.com").stdout.strip().splitlines()[-1]
    found = cli("exec", "search", "--key", key, "--arg", "expression=length(@)", "--compact")
    assert json.loads(found.stdout) == {"result": 1, "version": 1}
    missing = cli("exec", "meta", "--key", key)
    assert one_error_line(missing) == "error: the key's server has no tool 'meta'"


@pytest.mark.usefixtures("shop")
def test_a_tool_key_rate_limit_holds_across_processes_with_redis(cli: Cli) -> None:
    redis = {"PATCHBAY_REDIS_URL": require_redis()}
    secret = cli("toolkey", "create", "meta", "--rate-limit", "1").stdout.strip().splitlines()[-1]
    assert cli("exec", "meta", "--key", secret, env=redis).exit_code == 0
    # Every CLI run is a new store; only a shared bucket can refuse the second call.
    refused = cli("exec", "meta", "--key", secret, env=redis)
    line = one_error_line(refused)
    assert f"key {secret[:12]} is over its rate limit of 1 calls per minute; retry in" in line


@pytest.mark.usefixtures("shop")
def test_exec_leaves_an_audit_record_per_call(cli: Cli, settings: Settings) -> None:
    assert cli("exec", "meta").exit_code == 0
    assert cli("exec", "find").exit_code == 1

    async def work(session: AsyncSession) -> list[tuple[object, ...]]:
        r = AuditRecord
        query = select(r.channel, r.auth_method, r.tool_name, r.status, r.http_status).order_by(r.id)
        return [tuple(row) for row in (await session.execute(query)).all()]

    assert in_db(settings, work) == [("cli", "operator", "meta", "ok", 200), ("cli", "operator", "find", "error", 400)]


@pytest.mark.usefixtures("shop")
def test_an_api_key_rate_limit_refuses_the_call_over_it(cli: Cli) -> None:
    redis = {"PATCHBAY_REDIS_URL": require_redis()}
    assert cli("server", "create", "docs").exit_code == 0
    assert cli("tool", "attach", "meta", "--server", "docs").exit_code == 0
    assert cli("user", "create", "ann@example.com").exit_code == 0
    made = cli("key", "create", "--server", "docs", "--user", "ann@example.com", "--rate-limit", "1")
    key = made.stdout.strip().splitlines()[-1]
    assert cli("exec", "meta", "--key", key, env=redis).exit_code == 0
    refused = cli("exec", "meta", "--key", key, env=redis)
    assert f"key {key[:12]} is over its rate limit of 1 calls per minute" in one_error_line(refused)


@pytest.mark.usefixtures("shop")
def test_tool_update_renames_redescribes_and_limits_with_the_rest_api_service(cli: Cli) -> None:
    changed = cli(
        "tool", "update", "meta", "--name", "owner_info", "--description", "Who owns it.", "--rate-limit", "7"
    )
    assert (changed.exit_code, changed.stdout.strip()) == (0, "updated tool owner_info"), changed.output
    shown = json.loads(cli("tool", "show", "owner_info").stdout)
    assert (shown["description"], shown["rate_limit"]) == ("Who owns it.", 7)
    assert cli("tool", "update", "owner_info", "--no-rate-limit", "--description", "").exit_code == 0
    shown = json.loads(cli("tool", "show", "owner_info").stdout)
    assert shown["rate_limit"] is None and shown["description"].startswith("Read the JSON value at /meta")
    taken = cli("tool", "update", "owner_info", "--name", "find")
    assert taken.exit_code == 1 and one_error_line(taken) == "error: tool 'find' already exists"
