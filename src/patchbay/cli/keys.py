"""``patchbay key``: API keys to one server. A new key's secret is printed once, last."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, emit_table, when
from patchbay.cli.runtime import Env, run
from patchbay.errors import InvalidInput
from patchbay.services.credentials import parse_binding
from patchbay.services.durations import parse_duration
from patchbay.services.keys import (
    Access,
    KeySummary,
    create_key,
    list_keys,
    revoke_key,
    set_key_credentials,
    set_key_tools,
)
from patchbay.services.servers import get_server
from patchbay.services.users import get_user

app = typer.Typer(help="API keys.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (key create: metadata line, then secret).")]
CredentialOption = Annotated[
    list[str] | None,
    typer.Option("--credential", help="UPSTREAM=own|org|shared:NAME: what the key calls that upstream with."),
]


def parse_allow(entries: list[str]) -> list[tuple[str, Access]]:
    """``TOOL``, ``TOOL:r`` or ``TOOL:rw`` (tool names never contain a colon)."""
    out: list[tuple[str, Access]] = []
    for entry in entries:
        tool, sep, access = entry.strip().rpartition(":")
        if not sep:
            tool, access = access, "rw"
        if not tool or access not in ("r", "rw"):
            raise InvalidInput(f"--allow {entry!r}: write TOOL, TOOL:r or TOOL:rw")
        out.append((tool, "r" if access == "r" else "rw"))
    return out


def key_json(summary: KeySummary) -> dict[str, Any]:
    """A key as JSON: metadata only, never secret material."""
    key = summary.key
    return {
        "prefix": key.prefix,
        "name": key.name,
        "server": summary.server,
        "user": summary.user,
        "state": summary.state,
        "tools": summary.tools,
        "shared": key.shared,
        "credentials": summary.credentials,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "last_used_at": key.last_used_at,
    }


def credentials_text(summary: KeySummary) -> str:
    """``shared`` and the explicit choices, or ``default``."""
    chosen = ",".join(f"{u}={c}" for u, c in sorted(summary.credentials.items()))
    if summary.key.shared:
        return f"shared:{chosen}"
    return chosen or "default"


@app.command("create")
def create(
    ctx: typer.Context,
    server: Annotated[str, typer.Option("--server", help="The server the key opens.")],
    user: Annotated[str, typer.Option("--user", help="Email of the key's owner.")],
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "",
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="TOOL[:r|:rw], by exposed name; repeatable.")
    ] = None,
    expires_in: Annotated[str | None, typer.Option("--expires-in", help="e.g. 30d, 12h, 15m.")] = None,
    rate_limit: Annotated[int | None, typer.Option("--rate-limit", help="Tool calls per minute.")] = None,
    credential: CredentialOption = None,
    shared: Annotated[
        bool, typer.Option("--shared", help="Not personal: calls with its shared credentials whoever holds it.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a key; without --allow it may use every tool of its server."""
    grants = parse_allow(allow) if allow else None
    bindings = [parse_binding(entry) for entry in credential or []]
    lifetime = parse_duration(expires_in) if expires_in is not None else None

    async def work(env: Env) -> tuple[KeySummary, str]:
        async with env.transaction() as session:
            org = await env.org(session)
            target = await get_server(session, org_id=org.id, name_or_slug=server)
            owner = await get_user(session, email=user)
            key, secret = await create_key(
                session,
                server=target,
                user=owner,
                name=name,
                allow=grants,
                expires_in=lifetime,
                secret=env.secret,
                rate_limit=rate_limit,
                credentials=bindings,
                shared=shared,
            )
            summaries = await list_keys(session, org_id=org.id, server=target)
            return next(s for s in summaries if s.key.id == key.id), secret

    summary, secret = run(ctx, work)
    if as_json:
        emit_json(key_json(summary), compact=True)
    else:
        scope = "every tool" if summary.tools is None else f"{len(summary.tools)} tool(s)"
        expiry = f"expires {when(summary.key.expires_at)}" if summary.key.expires_at else "never expires"
        owner = f"for server {summary.server} ({'shared, by ' if summary.key.shared else ''}{summary.user})"
        typer.echo(f"created key {summary.key.prefix} {owner}, {scope}, {expiry}")
        typer.echo("store the key now; it cannot be shown again", err=True)
    typer.echo(secret)


@app.command("list")
def list_(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", help="Only keys of this server.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Keys of the organization (prefixes only; secrets are never stored)."""

    async def work(env: Env) -> list[KeySummary]:
        async with env.transaction() as session:
            org = await env.org(session)
            chosen = await get_server(session, org_id=org.id, name_or_slug=server) if server else None
            return await list_keys(session, org_id=org.id, server=chosen)

    summaries = run(ctx, work)
    if as_json:
        emit_json([key_json(s) for s in summaries])
        return
    emit_table(
        ["PREFIX", "NAME", "SERVER", "USER", "STATE", "TOOLS", "CREDENTIALS", "EXPIRES", "LAST USED"],
        [
            [
                s.key.prefix,
                s.key.name or "-",
                s.server,
                s.user,
                s.state,
                "all" if s.tools is None else ",".join(f"{t}:{a}" for t, a in sorted(s.tools.items())) or "none",
                credentials_text(s),
                when(s.key.expires_at, never="never"),
                when(s.key.last_used_at, never="never"),
            ]
            for s in summaries
        ],
        empty="no keys",
    )


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as key list shows it).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Revoke a key; it stops working at once."""

    async def work(env: Env) -> dict[str, Any]:
        async with env.transaction() as session:
            org = await env.org(session)
            key = await revoke_key(session, prefix=prefix, org_id=org.id)
            return {"prefix": key.prefix, "revoked_at": key.revoked_at}

    revoked = run(ctx, work)
    if as_json:
        emit_json(revoked)
    else:
        typer.echo(f"revoked key {revoked['prefix']}")


@app.command("update")
def update(
    ctx: typer.Context,
    prefix: Annotated[str, typer.Argument(help="The key's prefix (as `key list` shows it).")],
    allow: Annotated[
        list[str] | None, typer.Option("--allow", help="TOOL[:r|:rw], by exposed name; repeatable; replaces all.")
    ] = None,
    all_tools: Annotated[bool, typer.Option("--all-tools", help="Let the key use every tool of its server.")] = False,
    credential: CredentialOption = None,
    default_credentials: Annotated[
        bool, typer.Option("--default-credentials", help="Drop every credential choice of the key.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Replace a key's tool permissions and/or credential choices; the next call uses them."""
    if allow and all_tools:
        raise InvalidInput("give either --allow TOOL[:r|:rw]... or --all-tools")
    if credential and default_credentials:
        raise InvalidInput("give either --credential UPSTREAM=... or --default-credentials")
    tools_change = bool(allow) or all_tools
    credentials_change = bool(credential) or default_credentials
    if not tools_change and not credentials_change:
        raise InvalidInput("give either --allow TOOL[:r|:rw]... or --all-tools, and/or --credential UPSTREAM=CHOICE")
    grants = parse_allow(allow) if allow else None
    bindings = [parse_binding(entry) for entry in credential or []]

    async def work(env: Env) -> KeySummary:
        async with env.transaction() as session:
            org = await env.org(session)
            if tools_change:
                key = await set_key_tools(session, prefix=prefix, org_id=org.id, allow=grants)
            if credentials_change:
                key = await set_key_credentials(session, prefix=prefix, org_id=org.id, credentials=bindings)
            return next(s for s in await list_keys(session, org_id=org.id) if s.key.id == key.id)

    summary = run(ctx, work)
    if as_json:
        emit_json(key_json(summary))
        return
    tools = "every tool" if summary.tools is None else ", ".join(f"{n}:{a}" for n, a in sorted(summary.tools.items()))
    if tools_change:
        typer.echo(f"key {summary.key.prefix} may now use {tools}")
    if credentials_change:
        typer.echo(f"key {summary.key.prefix} now calls upstreams with: {credentials_text(summary)}")
