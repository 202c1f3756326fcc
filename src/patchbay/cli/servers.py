"""``patchbay server``: MCP endpoints built from upstreams, and the tools they expose."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.cli.output import emit_json, emit_table, plural
from patchbay.cli.runtime import Env, run
from patchbay.errors import InvalidInput
from patchbay.services.server_changes import change_tools, change_upstreams, set_server_options
from patchbay.services.servers import create_server, get_server, set_payload_capture
from patchbay.services.tools import ToolRow, server_tools
from patchbay.store.models import Server

app = typer.Typer(help="Servers: what one MCP endpoint exposes.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]
NewToolsOption = Annotated[
    str, typer.Option("--new-tools", help="Tools an upstream adds later start enabled or disabled.")
]


def tool_json(row: ToolRow) -> dict[str, Any]:
    """A tool row as JSON."""
    return {
        "name": row.name,
        "upstream": row.upstream,
        "upstream_name": row.upstream_name,
        "enabled": row.enabled,
        "status": row.status,
        "read_only": row.read_only,
    }


def tool_table(rows: list[ToolRow], *, empty: str) -> None:
    """Tool rows as an aligned table."""
    emit_table(
        ["TOOL", "ENABLED", "STATUS", "ACCESS", "UPSTREAM"],
        [
            [
                r.name,
                "-" if r.enabled is None else ("yes" if r.enabled else "no"),
                r.status,
                "read-only" if r.read_only else "read-write",
                r.upstream,
            ]
            for r in rows
        ],
        empty=empty,
    )


def split_tools(value: str | None) -> list[str] | None:
    """The names of a ``--tools a,b`` value (None when not given)."""
    return None if value is None else [part.strip() for part in value.split(",")]


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name.")],
    upstream: Annotated[list[str] | None, typer.Option("--upstream", help="An upstream (slug); repeatable.")] = None,
    tools: Annotated[
        str | None, typer.Option("--tools", help="Only these tools: TOOL,... (upstream names or slug__tool).")
    ] = None,
    plain_names: Annotated[
        bool, typer.Option("--plain-names", help="Expose the upstreams' own tool names, without prefix.")
    ] = False,
    new_tools: NewToolsOption = "disabled",
    compact: Annotated[bool, typer.Option("--compact", help="Expose a search tool and a call tool instead.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create a server over upstreams, exposing all their tools or only --tools."""

    async def work(env: Env) -> dict[str, Any]:
        async with env.transaction() as session:
            org = await env.org(session)
            server = await create_server(
                session,
                org_id=org.id,
                name=name,
                upstream_slugs=upstream or [],
                tools=split_tools(tools),
                plain_names=plain_names,
                new_tools=new_tools,
                compact=compact,
            )
            rows = await server_tools(session, server=server)
            return {
                "id": server.id,
                "name": server.name,
                "slug": server.slug,
                "plain_names": server.plain_names,
                "upstreams": [slug.strip() for slug in upstream or []],
                "tools": [tool_json(r) for r in rows],
            }

    created = run(ctx, work)
    if as_json:
        emit_json(created)
        return
    typer.echo(f"created server {created['slug']} with {plural(len(created['tools']), 'tool')}")
    for tool in created["tools"]:
        typer.echo(f"  {tool['name']}")


def _pairs(entries: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries or []:
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise InvalidInput(f"{option} expects TOOL=VALUE")
        out[name.strip()] = value
    return out


@app.command("tools")
def tools_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name or slug.")],
    enable: Annotated[list[str] | None, typer.Option("--enable", help="Exposed tool name; repeatable.")] = None,
    disable: Annotated[list[str] | None, typer.Option("--disable", help="Exposed tool name; repeatable.")] = None,
    rename: Annotated[list[str] | None, typer.Option("--rename", help="TOOL=NEW_NAME (empty: default).")] = None,
    describe: Annotated[
        list[str] | None, typer.Option("--describe", help="TOOL=DESCRIPTION (empty: upstream's).")
    ] = None,
    attach: Annotated[list[str] | None, typer.Option("--attach", help="upstream__tool to add; repeatable.")] = None,
    detach: Annotated[list[str] | None, typer.Option("--detach", help="Exposed tool name to remove.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show a server's tools; the options change them (connected clients are told at once)."""
    names, descriptions = _pairs(rename, "--rename"), _pairs(describe, "--describe")

    async def change(session: AsyncSession, server: Server) -> list[ToolRow]:
        return await change_tools(
            session,
            server=server,
            enable=enable or [],
            disable=disable or [],
            names=names,
            descriptions=descriptions,
            attach=attach or [],
            detach=detach or [],
        )

    _show_tools(ctx, name, change, as_json)


@app.command("upstreams")
def upstreams_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name or slug.")],
    add: Annotated[list[str] | None, typer.Option("--add", help="Upstream to add, all tools on.")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="Upstream to remove, with its tools.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add or remove a server's upstreams; show its tools afterwards."""

    async def change(session: AsyncSession, server: Server) -> list[ToolRow]:
        return await change_upstreams(session, server=server, add=add or [], remove=remove or [])

    _show_tools(ctx, name, change, as_json)


def _show_tools(
    ctx: typer.Context,
    name: str,
    change: Callable[[AsyncSession, Server], Awaitable[list[ToolRow]]],
    as_json: bool,
) -> None:
    """Apply ``change`` to the server ``name`` in one transaction, then print its tools."""

    async def work(env: Env) -> list[ToolRow]:
        async with env.transaction() as session:
            org = await env.org(session)
            return await change(session, await get_server(session, org_id=org.id, name_or_slug=name))

    rows = run(ctx, work)
    if as_json:
        emit_json([tool_json(r) for r in rows])
        return
    tool_table(rows, empty="this server has no tools")


@app.command("set")
def set_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name or slug.")],
    new_tools: Annotated[
        str | None, typer.Option("--new-tools", help="enabled | disabled: how tools an upstream adds later start.")
    ] = None,
    compact: Annotated[
        bool | None, typer.Option("--compact/--no-compact", help="A search tool and a call tool instead of all.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a server's options."""

    async def work(env: Env) -> dict[str, Any]:
        async with env.transaction() as session:
            org = await env.org(session)
            server = await get_server(session, org_id=org.id, name_or_slug=name)
            await set_server_options(session, server=server, new_tools=new_tools, compact=compact)
            return {"slug": server.slug, "new_tools": server.new_tools, "compact": server.compact}

    options = run(ctx, work)
    if as_json:
        emit_json(options)
        return
    mode = "on" if options["compact"] else "off"
    typer.echo(f"server {options['slug']}: new tools {options['new_tools']}, compact {mode}")


@app.command("capture")
def capture(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Server name or slug.")],
    enabled: Annotated[
        bool, typer.Option("--on/--off", help="Store request and response bodies of this server's calls.")
    ],
) -> None:
    """Switch payload capture (redacted bodies in the object store) for one server."""

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            server = await get_server(session, org_id=org.id, name_or_slug=name)
            await set_payload_capture(session, server=server, enabled=enabled)
            return server.slug

    slug = run(ctx, work)
    typer.echo(f"payload capture for server {slug} is {'on' if enabled else 'off'}")
