"""``patchbay toolkey``: keys to one tool (``tk_``). A new key's secret is printed once, last."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, emit_table, when
from patchbay.cli.runtime import Env, run
from patchbay.services.durations import parse_duration
from patchbay.services.local_tools import find_tool
from patchbay.services.tool_keys import (
    ToolKeySummary,
    create_tool_key,
    list_tool_keys,
    revoke_tool_key,
    summary_of,
)

app = typer.Typer(help="Tool access keys: keys to one tool, for direct execution.", no_args_is_help=True)


def summary_json(key: ToolKeySummary) -> dict[str, Any]:
    """A tool key as JSON: metadata only, never secret material."""
    return {
        "prefix": key.prefix,
        "name": key.name,
        "tool": key.tool,
        "scopes": list(key.scopes),
        "state": key.state,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
    }


@app.command("create")
def create(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="The tool the key opens (name or id).")],
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="execute, read or admin; repeatable (default execute).")
    ] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h, 15m.")] = None,
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    rate_limit: Annotated[int | None, typer.Option("--rate-limit", help="Calls per minute for this key.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (metadata line, then secret).")] = False,
) -> None:
    """Create a tool key; the secret is printed once, alone on the last line."""
    lifetime = parse_duration(expires_in) if expires_in is not None else None

    async def work(env: Env) -> tuple[ToolKeySummary, str]:
        async with env.transaction() as session:
            org = await env.org(session)
            found = await find_tool(session, org_id=org.id, name=tool)
            key, secret = await create_tool_key(
                session,
                org_id=org.id,
                tool=found,
                name=name,
                scopes=scope or [],
                expires_in=lifetime,
                rate_limit=rate_limit,
                secret=env.secret,
            )
            summary = summary_of(key, tool=found.name)
            return summary, secret

    summary, secret = run(ctx, work)
    if as_json:
        emit_json(summary_json(summary), compact=True)
    else:
        expiry = f"expires {when(summary.expires_at)}" if summary.expires_at else "never expires"
        scopes = ",".join(summary.scopes)
        typer.echo(f"created tool key {summary.prefix} for tool {summary.tool} ({scopes}), {expiry}")
        typer.echo("store the key now; it cannot be shown again", err=True)
    typer.echo(secret)


@app.command("list")
def list_(
    ctx: typer.Context,
    tool: Annotated[str | None, typer.Argument(help="Only this tool's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Tool keys of the organization (prefixes only; secrets are never stored)."""

    async def work(env: Env) -> list[ToolKeySummary]:
        async with env.transaction() as session:
            org = await env.org(session)
            found = await find_tool(session, org_id=org.id, name=tool) if tool else None
            return await list_tool_keys(session, org_id=org.id, tool=found)

    keys = run(ctx, work)
    if as_json:
        emit_json([summary_json(k) for k in keys])
        return
    emit_table(
        ["PREFIX", "NAME", "TOOL", "SCOPES", "STATE", "EXPIRES", "LAST USED"],
        [
            [
                k.prefix,
                k.name or "-",
                k.tool,
                ",".join(k.scopes),
                k.state,
                when(k.expires_at, never="never"),
                when(k.last_used_at, never="never"),
            ]
            for k in keys
        ],
        empty="no tool keys",
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as toolkey list shows it).")],
) -> None:
    """Revoke a tool key; it stops working at once."""

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            return (await revoke_tool_key(session, org_id=org.id, prefix=prefix)).prefix

    typer.echo(f"revoked tool key {run(ctx, work)}")
