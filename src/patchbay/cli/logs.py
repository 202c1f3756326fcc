"""``patchbay logs``: the audit trail, newest first, one page at a time or followed live."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from patchbay.audit.events import AuditEvent
from patchbay.audit.objects import ObjectStore, make_object_store
from patchbay.cli.output import emit_json, emit_table
from patchbay.cli.runtime import Env, run
from patchbay.errors import InvalidInput
from patchbay.services.audit_logs import (
    LogPage,
    follow_logs,
    get_log,
    list_logs,
    prune_logs,
    read_payload,
    resolve_query,
    retention_age,
    server_slugs,
)
from patchbay.services.durations import parse_duration

app = typer.Typer(help="The audit trail: list, show one record, prune.")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (with --follow: one object per line).")]


def parse_moment(text: str, *, option: str) -> datetime:
    """``2026-11-23T12:00`` (UTC unless it says otherwise) or a duration ago, like ``15m`` or ``2d``."""
    try:
        return datetime.now(UTC) - parse_duration(text)
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput(f"{option} {text!r}: write an ISO time (2026-11-23T12:00) or a duration (15m, 2d)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def record_json(record: AuditEvent, servers: dict[str, str]) -> dict[str, Any]:
    """A record as JSON, with the server's slug beside its id."""
    out = record.as_row()
    out["server"] = servers.get(record.server_id or "")
    return out


def _row(record: AuditEvent, servers: dict[str, str]) -> list[str]:
    return [
        record.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        record.id,
        record.channel,
        servers.get(record.server_id or "", record.server_id or "-"),
        record.key_prefix or "-",
        record.event or record.method or "-",
        record.tool_name or "-",
        record.status,
        f"{record.duration_ms:.1f}",
    ]


_HEADERS = ["TIME (UTC)", "ID", "CHANNEL", "SERVER", "KEY", "METHOD/EVENT", "TOOL", "STATUS", "MS"]


def _store(env: Env) -> ObjectStore:
    return make_object_store(env.settings.object_store_url, default_root=env.settings.objects_dir)


@app.callback(invoke_without_command=True)
def logs(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", help="Server name or slug.")] = None,
    key: Annotated[str | None, typer.Option("--key", help="API key prefix.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Key owner's email.")] = None,
    tool: Annotated[str | None, typer.Option("--tool", help="Tool name as the server exposes it.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="ok, error or denied.")] = None,
    channel: Annotated[str | None, typer.Option("--channel", help="mcp, api or cli.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="ISO time or duration ago (15m, 2d).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="ISO time or duration ago.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="Records per page (1-1000).")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="Continue after this page's last id.")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new records as they come.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List audit records, newest first; --follow streams new ones (Ctrl-C stops)."""
    if ctx.invoked_subcommand is not None:
        return
    since_at = parse_moment(since, option="--since") if since else None
    until_at = parse_moment(until, option="--until") if until else None

    async def work(env: Env) -> tuple[LogPage, dict[str, str]]:
        async with env.sessionmaker() as session:
            org = await env.org(session)
            query = await resolve_query(
                session,
                org_id=org.id,
                server=server,
                key=key,
                user=user,
                tool=tool,
                status=status,
                channel=channel,
                since=since_at,
                until=until_at,
                include_unowned=True,  # the operator on this machine sees gateway-wide events too
            )
            page = await list_logs(session, query=query, limit=limit, cursor=cursor)
            servers = await server_slugs(session, org_id=org.id)
        if follow:
            _print_stream(list(reversed(page.records)), servers, as_json)
            newest = page.records[0].id if page.records else None
            async for record in follow_logs(env.sessionmaker, query=query, after=newest):
                _print_stream([record], servers, as_json)
        return page, servers

    try:
        page, servers = run(ctx, work)
    except KeyboardInterrupt:
        return
    if as_json:
        emit_json({"records": [record_json(r, servers) for r in page.records], "next_cursor": page.next_cursor})
        return
    emit_table(_HEADERS, [_row(r, servers) for r in page.records], empty="no audit records match")
    if page.next_cursor:
        typer.echo(f"more: patchbay logs --cursor {page.next_cursor}", err=True)


def _print_stream(records: list[AuditEvent], servers: dict[str, str], as_json: bool) -> None:
    for record in records:
        if as_json:
            option = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z
            typer.echo(orjson.dumps(record_json(record, servers), option=option).decode())
        else:
            typer.echo("  ".join(_row(record, servers)))


@app.command("show")
def show(
    ctx: typer.Context,
    record_id: Annotated[str, typer.Argument(metavar="ID", help="Audit record id.")],
    payload: Annotated[bool, typer.Option("--payload", help="Also print the stored request and response.")] = False,
    as_json: JsonOption = False,
) -> None:
    """One audit record, and with --payload its stored (redacted) request and response."""

    async def work(env: Env) -> tuple[AuditEvent, dict[str, str], Any]:
        async with env.sessionmaker() as session:
            org = await env.org(session)
            record = await get_log(session, org_id=None, record_id=record_id)
            servers = await server_slugs(session, org_id=org.id)
        document = None
        if payload:
            store = _store(env)
            try:
                document = await read_payload(store, record=record)
            finally:
                await store.aclose()
        return record, servers, document

    record, servers, document = run(ctx, work)
    out = record_json(record, servers)
    if as_json:
        emit_json({**out, "payload": document} if payload else out)
        return
    width = max(len(name) for name in out)
    for name, value in out.items():
        if value is not None:
            shown = value.isoformat() if isinstance(value, datetime) else value
            typer.echo(f"{name.ljust(width)}  {shown}")
    if payload:
        typer.echo("payload:")
        emit_json(document)


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str | None,
        typer.Option("--older-than", help="Age, like 30d (default: PATCHBAY_AUDIT_RETENTION_DAYS)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Delete audit records and their payloads older than an age."""

    async def work(env: Env) -> dict[str, Any]:
        age = retention_age(older_than, default_days=env.settings.audit_retention_days)
        cutoff = datetime.now(UTC) - age
        store = _store(env)
        try:
            result = await prune_logs(env.sessionmaker, store, older_than=cutoff)
        finally:
            await store.aclose()
        return {"records": result.records, "payloads": result.payloads, "cutoff": cutoff}

    result = run(ctx, work)
    if as_json:
        emit_json(result)
        return
    typer.echo(f"pruned {result['records']} records and {result['payloads']} payloads older than {result['cutoff']}")
