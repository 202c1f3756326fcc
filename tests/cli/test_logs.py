"""``patchbay logs``: list newest first with cursor pages, show one record with its payload, prune."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit.events import AuditEvent
from patchbay.audit.objects import LocalObjectStore
from patchbay.audit.payloads import Captured, encode_payload, payload_key
from patchbay.services.orgs import ensure_default_org
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.cli.conftest import Cli, in_db, one_error_line


def _seed(settings: Settings, ages: list[timedelta], **values: object) -> list[AuditEvent]:
    now_ms = int(time.time() * 1000)

    async def work(session: AsyncSession) -> list[AuditEvent]:
        org = await ensure_default_org(session)
        events = []
        for age in ages:
            when = datetime.fromtimestamp(now_ms / 1000, UTC) - age
            rid = f"{int(when.timestamp() * 1000):012x}{os.urandom(10).hex()}"
            fields: dict[str, object] = {"org_id": org.id, "method": "tools/call", "tool_name": "fx__echo", **values}
            event = AuditEvent(id=rid, created_at=when, **fields)  # type: ignore[arg-type]
            session.add(AuditRecord(**event.as_row()))
            events.append(event)
        return events

    return in_db(settings, work)


def test_logs_lists_newest_first_and_pages_with_the_cursor(cli: Cli, settings: Settings) -> None:
    events = _seed(settings, [timedelta(minutes=i) for i in range(5)])
    first = cli("logs", "--limit", "3", "--json")
    assert first.exit_code == 0, first.output
    page = json.loads(first.stdout)
    assert [r["id"] for r in page["records"]] == [e.id for e in events[:3]]
    second = json.loads(cli("logs", "--limit", "3", "--json", "--cursor", page["next_cursor"]).stdout)
    assert [r["id"] for r in second["records"]] == [e.id for e in events[3:]]
    assert second["next_cursor"] is None
    table = cli("logs", "--limit", "3")
    assert table.exit_code == 0
    lines = table.stdout.strip().splitlines()
    assert lines[0].startswith("TIME (UTC)")
    assert events[0].id in lines[1]
    assert f"--cursor {page['next_cursor']}" in table.stderr


def test_logs_filters_by_status_and_time(cli: Cli, settings: Settings) -> None:
    _seed(settings, [timedelta(hours=3)], status="ok")
    (denied,) = _seed(settings, [timedelta(minutes=10)], status="denied")
    _seed(settings, [timedelta(hours=5)], status="denied")
    result = cli("logs", "--status", "denied", "--since", "1h", "--json")
    assert [r["id"] for r in json.loads(result.stdout)["records"]] == [denied.id]


def test_logs_show_prints_a_record_and_its_payload(cli: Cli, settings: Settings) -> None:
    (event,) = _seed(settings, [timedelta(0)])
    (bare,) = _seed(settings, [timedelta(seconds=1)])
    key = payload_key(event)

    async def store_it(session: AsyncSession) -> None:
        from sqlalchemy import update

        await LocalObjectStore(settings.objects_dir).put(
            key, encode_payload(event, Captured(b'{"q":1}', b"", 0), cap=99)
        )
        await session.execute(update(AuditRecord).where(AuditRecord.id == event.id).values(payload_key=key))

    in_db(settings, store_it)
    shown = cli("logs", "show", event.id, "--payload", "--json")
    assert shown.exit_code == 0, shown.output
    document = json.loads(shown.stdout)
    assert document["id"] == event.id
    assert document["payload"]["request"] == {"q": 1}
    text = cli("logs", "show", event.id)
    assert "tool_name" in text.stdout and "fx__echo" in text.stdout
    assert "no stored payload" in one_error_line(cli("logs", "show", bare.id, "--payload"))
    assert "no audit record" in one_error_line(cli("logs", "show", "0" * 32))


def test_logs_prune_removes_records_older_than_the_age(cli: Cli, settings: Settings) -> None:
    _seed(settings, [timedelta(days=40), timedelta(days=31)])
    (young,) = _seed(settings, [timedelta(days=2)])
    result = cli("logs", "prune", "--older-than", "30d", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["records"] == 2
    left = json.loads(cli("logs", "--json").stdout)["records"]
    assert [r["id"] for r in left] == [young.id]


def test_logs_bad_input_is_one_error_line(cli: Cli, settings: Settings) -> None:
    assert "status must be one of" in one_error_line(cli("logs", "--status", "meh"))
    assert "--since" in one_error_line(cli("logs", "--since", "yesterday-ish"))
    assert "cursor" in one_error_line(cli("logs", "--cursor", "zzz"))
    assert "PATCHBAY_AUDIT_RETENTION_DAYS" in one_error_line(cli("logs", "prune"))
    assert "does not exist" in one_error_line(cli("logs", "--server", "ghost"))


def test_logs_follow_prints_new_records_as_they_arrive(settings: Settings) -> None:
    """A real ``patchbay logs --follow`` process: a record written after it started shows up."""
    import subprocess
    import sys

    from tests.cli.conftest import cli_env

    env = {**os.environ, **{k: v for k, v in cli_env(settings).items() if v is not None}}
    (before,) = _seed(settings, [timedelta(minutes=1)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "patchbay", "logs", "--follow", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["id"] == before.id
        (after,) = _seed(settings, [timedelta(0)])
        second = json.loads(proc.stdout.readline())
        assert second["id"] == after.id
    finally:
        proc.terminate()
        proc.wait(timeout=10)
