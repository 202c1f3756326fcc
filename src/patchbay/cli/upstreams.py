"""``patchbay upstream``: add upstream MCP servers (after talking to them) and list them.

Nothing is stored for an upstream that cannot be reached and asked for its tools.
Env and header values are secrets: they are encrypted at rest and never printed.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, emit_table, plural
from patchbay.cli.runtime import Env, run
from patchbay.errors import InvalidInput
from patchbay.oauth.connections import add_oauth_upstream
from patchbay.oauth.registration import PreRegistered
from patchbay.services.naming import default_tool_name
from patchbay.services.upstream_add import (
    Check,
    Outcome,
    Store,
    StoreOAuth,
    add_entry,
    import_entries,
    store_entry,
)
from patchbay.services.upstream_input import UpstreamInput, check_upstream, redact_url
from patchbay.services.upstreams import (
    DiscoveredUpstream,
    SyncResult,
    ensure_upstream_name_free,
    get_upstream,
    list_upstreams,
    parse_mcp_servers_file,
    remove_upstream,
)
from patchbay.store.models import ServerTemplate

app = typer.Typer(help="Upstream MCP servers.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the upstream to answer.", min=0.1)]


def parse_env(entries: list[str]) -> dict[str, str]:
    """``--env KEY=VALUE`` entries as a mapping; values are never echoed."""
    env: dict[str, str] = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            # The entry may be a pasted secret: do not echo it.
            raise InvalidInput("--env expects KEY=VALUE (an entry has no KEY= part)")
        if key in env:
            raise InvalidInput(f"--env {key} is given twice")
        env[key] = value
    return env


def parse_headers(entries: list[str]) -> dict[str, str]:
    """``--header "Name: value"`` entries as a mapping; values are never echoed."""
    headers: dict[str, str] = {}
    for entry in entries:
        name, sep, value = entry.partition(":")
        if not sep or not name.strip():
            raise InvalidInput('--header expects "Name: value" (an entry has no "Name:" part)')
        headers[name.strip()] = value.strip()
    return headers


def build_input(
    *,
    name: str,
    command: str | None,
    url: str | None,
    transport: str | None,
    env: list[str],
    header: list[str],
) -> UpstreamInput:
    """A validated upstream from the ``upstream add`` options."""
    if (command is None) == (url is None):
        raise InvalidInput("give exactly one of --command or --url")
    argv: list[str] | None = None
    if command is not None:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            raise InvalidInput(f"--command cannot be split: {exc}") from exc
    chosen = transport or ("stdio" if command is not None else "streamable_http")
    return check_upstream(
        name=name, transport=chosen, command=argv, url=url, env=parse_env(env), headers=parse_headers(header)
    )


def _check(env: Env) -> Check:
    async def check(entry: UpstreamInput) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            return await ensure_upstream_name_free(session, org_id=org.id, name=entry.name)

    return check


def _store(env: Env) -> Store:
    async def store(entry: UpstreamInput, found: DiscoveredUpstream) -> ServerTemplate:
        async with env.transaction() as session:
            org = await env.org(session)
            return await store_entry(session, org_id=org.id, entry=entry, found=found, secret=env.secret)

    return store


def _store_oauth(env: Env, pre_registered: PreRegistered | None) -> StoreOAuth:
    async def store(entry: UpstreamInput) -> ServerTemplate:
        assert entry.url is not None  # add_entry checks it
        async with env.transaction() as session:
            org = await env.org(session)
            return await add_oauth_upstream(
                session,
                org_id=org.id,
                name=entry.name,
                url=entry.url,
                transport=entry.transport,
                settings=env.settings,
                secret=env.secret,
                pre_registered=pre_registered,
            )

    return store


def describe(template: ServerTemplate, tools: list[str]) -> dict[str, Any]:
    """An upstream as JSON; never env or header values."""
    return {
        "id": template.id,
        "slug": template.slug,
        "name": template.name,
        "transport": template.transport,
        "command": template.command,
        "url": redact_url(template.url) if template.url else None,
        "secret_keys": template.required_keys,
        "protocol_version": template.protocol_version,
        "server_info": template.server_info,
        "tools": tools,
    }


def _tool_names(template: ServerTemplate, found: DiscoveredUpstream) -> list[str]:
    names = [str(t.get("name")) for t in found.tools]
    return sorted(default_tool_name(slug=template.slug, tool_name=n, plain=False) for n in names)


def _tools_of(outcome: Outcome) -> list[str]:
    if outcome.template is None or outcome.found is None:
        return []
    return _tool_names(outcome.template, outcome.found)


def _server_label(template: ServerTemplate) -> str:
    info = template.server_info or {}
    label = " ".join(str(info[k]) for k in ("name", "version") if info.get(k))
    return f"{template.transport}, {label or 'unnamed server'}, protocol {template.protocol_version or '?'}"


@app.command("add")
def add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Name; its slug prefixes the upstream's tools.")],
    command: Annotated[str | None, typer.Option("--command", help='Local server: "CMD ARG...".')] = None,
    url: Annotated[str | None, typer.Option("--url", help="Remote server URL.")] = None,
    transport: Annotated[
        str | None,
        typer.Option("--transport", help="stdio | streamable_http | sse (default by --command/--url)."),
    ] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for the server (secret).")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", help='"Name: value" (secret).')] = None,
    timeout: TimeoutOption = 30.0,
    oauth: Annotated[
        bool, typer.Option("--oauth", help="Users connect their own accounts (OAuth); detected on a 401 too.")
    ] = False,
    oauth_client_id: Annotated[
        str | None, typer.Option("--oauth-client-id", help="A client registered at the provider by hand.")
    ] = None,
    oauth_client_secret_stdin: Annotated[
        bool, typer.Option("--oauth-client-secret-stdin", help="Read that client's secret from stdin.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Connect to an upstream, list its tools, and store it with them."""
    entry = build_input(name=name, command=command, url=url, transport=transport, env=env or [], header=header or [])
    client_secret = sys.stdin.readline().strip() if oauth_client_secret_stdin else None

    async def work(env_: Env) -> tuple[ServerTemplate, list[str]]:
        pre_registered = PreRegistered(oauth_client_id, client_secret) if oauth_client_id else None
        added = await add_entry(
            entry,
            check=_check(env_),
            store=_store(env_),
            seconds=timeout,
            store_oauth=_store_oauth(env_, pre_registered),
            oauth=oauth or oauth_client_id is not None,
        )
        assert added.template is not None  # add_entry raises otherwise
        found = added.found
        return added.template, _tool_names(added.template, found) if found is not None else []

    template, tools = run(ctx, work)
    if as_json:
        emit_json(describe(template, tools))
        return
    if template.auth_kind == "oauth":
        typer.echo(
            f"added OAuth upstream {template.slug}: each user connects at "
            f"/api/v1/orgs/ORG/connections/{template.slug}/start"
        )
        return
    typer.echo(f"added upstream {template.slug} ({_server_label(template)}) with {plural(len(tools), 'tool')}")
    for tool in tools:
        typer.echo(f"  {tool}")


def _read(file: str) -> str:
    if file == "-":
        return sys.stdin.read()
    try:
        return Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidInput(f"cannot read {file}: {reason}") from exc


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help='An "mcpServers" JSON file (Claude Desktop, .mcp.json); - for stdin.')],
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Add every server of an mcpServers file; ${VAR} expands from the environment."""
    entries = parse_mcp_servers_file(_read(file), environ=os.environ)
    outcomes = run(ctx, lambda env: import_entries(entries, check=_check(env), store=_store(env), seconds=timeout))
    failed = [o for o in outcomes if o.error is not None]
    if as_json:
        emit_json(
            [
                {"name": o.entry.name, "ok": False, "error": o.error}
                if o.template is None or o.error is not None
                else {"name": o.entry.name, "ok": True, **describe(o.template, _tools_of(o))}
                for o in outcomes
            ]
        )
    else:
        for o in outcomes:
            if o.error is not None or o.template is None:
                typer.echo(f"failed  {o.entry.name}: {o.error}")
            else:
                typer.echo(f"ok      {o.template.slug}: {plural(len(_tools_of(o)), 'tool')}")
        typer.echo(f"imported {len(outcomes) - len(failed)} of {plural(len(outcomes), 'upstream')}")
    if failed:
        typer.echo(f"error: {plural(len(failed), 'upstream')} could not be imported", err=True)
        raise typer.Exit(1)


@app.command("list")
def list_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Upstreams this organization can use."""

    async def work(env: Env) -> list[dict[str, Any]]:
        async with env.transaction() as session:
            org = await env.org(session)
            return [
                {
                    "slug": s.template.slug,
                    "name": s.template.name,
                    "transport": s.template.transport,
                    "target": shlex.join(s.template.command or [])
                    if s.template.command
                    else redact_url(s.template.url or ""),
                    "tools": s.active_tools,
                    "servers": s.servers,
                    "scope": "global" if s.template.org_id is None else "org",
                    "last_synced_at": s.template.last_synced_at,
                }
                for s in await list_upstreams(session, org_id=org.id)
            ]

    rows = run(ctx, work)
    if as_json:
        emit_json(rows)
        return
    emit_table(
        ["SLUG", "TRANSPORT", "TOOLS", "SERVERS", "TARGET"],
        [[r["slug"], r["transport"], str(r["tools"]), str(r["servers"]), r["target"]] for r in rows],
        empty="no upstreams yet; add one with: patchbay upstream add NAME --command ... | --url ...",
    )


@app.command("sync")
def sync(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Upstream slug.")],
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Ask an upstream for its tools now; tools it rewrote are quarantined until approved."""
    from patchbay.services.upstream_sync import sync_upstream

    async def work(env: Env) -> tuple[str, SyncResult]:
        async with env.transaction() as session:
            org = await env.org(session)
            template = await get_upstream(session, slug=name, org_id=org.id)
            slug, template_id = template.slug, template.id
        result = await sync_upstream(env.sessionmaker, template_id=template_id, secret=env.secret, timeout=timeout)
        return slug, result

    slug, result = run(ctx, work)
    report = {
        "upstream": slug,
        "added": result.added,
        "changed": result.changed,
        "removed": result.removed,
        "quarantined": result.quarantined,
    }
    if as_json:
        emit_json(report)
        return
    if not result.any:
        typer.echo(f"upstream {slug}: no changes")
        return
    typer.echo(f"upstream {slug}:")
    for what in ("added", "changed", "removed", "quarantined"):
        for tool in report[what]:
            typer.echo(f"  {what:<12}{tool}")
    if result.quarantined:
        typer.echo("review quarantined tools with: patchbay tool review")


@app.command("remove")
def remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Upstream slug.")],
    force: Annotated[bool, typer.Option("--force", help="Also take it off the servers using it.")] = False,
) -> None:
    """Delete an upstream with its tools and secrets; refused while servers use it unless --force."""

    async def work(env: Env) -> None:
        async with env.transaction() as session:
            org = await env.org(session)
            await remove_upstream(session, slug=name, org_id=org.id, force=force)

    run(ctx, work)
    typer.echo(f"removed upstream {name}")
