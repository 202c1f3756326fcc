"""``patchbay tool``: tools by the names clients see; review and approve quarantined ones."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, plural
from patchbay.cli.runtime import Env, run
from patchbay.cli.servers import tool_json, tool_table
from patchbay.services.local_tools import (
    KEEP,
    Keep,
    LocalToolInfo,
    attach_tool,
    create_local_tool,
    delete_local_tool,
    detach_tool,
    find_tool,
    get_local_tool,
    update_tool,
)
from patchbay.services.pinning import Decision, ToolReview, decide_tool, quarantined_tools
from patchbay.services.servers import get_server
from patchbay.services.tools import ToolRow, list_tools

app = typer.Typer(help="Tools.", no_args_is_help=True)

ServerOption = Annotated[str | None, typer.Option("--server", help="Only this server's tools.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", help="Only this server's tools.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """A server's tools, or every tool of the organization (upstream tools by default name, local tools)."""

    async def work(env: Env) -> list[ToolRow]:
        async with env.transaction() as session:
            org = await env.org(session)
            chosen = await get_server(session, org_id=org.id, name_or_slug=server) if server else None
            return await list_tools(session, org_id=org.id, server=chosen)

    rows = run(ctx, work)
    if as_json:
        emit_json([tool_json(r) for r in rows])
        return
    tool_table(rows, empty="no tools" if server else "no tools yet; add an upstream first")


def local_json(tool: LocalToolInfo) -> dict[str, Any]:
    """A local tool as JSON."""
    return {
        "id": tool.tool_id,
        "name": tool.name,
        "document": tool.document,
        "path": tool.path,
        "type": tool.kind,
        "description": tool.description,
        "read_only": tool.read_only,
        "rate_limit": tool.rate_limit,
        "input_schema": tool.input_schema,
        "servers": list(tool.servers),
    }


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Tool name (as MCP clients will see it).")],
    doc: Annotated[str, typer.Option("--doc", help="The document the tool works on.")],
    path: Annotated[str, typer.Option("--path", help="RFC 6901 JSON pointer into the document ('' = all).")],
    kind: Annotated[str, typer.Option("--type", help="query, get, create, update or delete.")],
    description: Annotated[str | None, typer.Option("--description", help="What the tool is for.")] = None,
    rate_limit: Annotated[int | None, typer.Option("--rate-limit", help="Calls per minute, all callers.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create a local tool over a document; attach it to servers with 'tool attach'."""

    async def work(env: Env) -> LocalToolInfo:
        async with env.transaction() as session:
            org = await env.org(session)
            tool = await create_local_tool(
                session,
                org_id=org.id,
                name=name,
                document=doc,
                path=path,
                kind=kind.strip().lower(),
                description=description,
                rate_limit=rate_limit,
            )
            return await get_local_tool(session, org_id=org.id, name=tool.id)

    created = run(ctx, work)
    if as_json:
        emit_json(local_json(created))
    else:
        access = "read-only" if created.read_only else "read-write"
        where = f"{created.document} at {created.path or '/'}"
        typer.echo(f"created {created.kind} tool {created.name} on {where} ({access})")


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Local tool name.")],
) -> None:
    """A local tool as JSON: document, path, type, input schema, servers."""

    async def work(env: Env) -> LocalToolInfo:
        async with env.transaction() as session:
            org = await env.org(session)
            return await get_local_tool(session, org_id=org.id, name=name)

    emit_json(local_json(run(ctx, work)))


@app.command("update")
def update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A local tool name or a tool id (an upstream tool: --rate-limit only).")],
    new_name: Annotated[str | None, typer.Option("--name", help="Rename the local tool.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="New description ('' = default).")] = None,
    rate_limit: Annotated[int | None, typer.Option("--rate-limit", help="Calls per minute, all callers.")] = None,
    unlimited: Annotated[bool, typer.Option("--no-rate-limit", help="Remove the tool's rate limit.")] = False,
) -> None:
    """Rename or redescribe a local tool, or change any tool's rate limit; clients see it at once."""
    limit: int | Keep | None = None if unlimited else (rate_limit if rate_limit is not None else KEEP)

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            tool = await update_tool(
                session,
                org_id=org.id,
                name=name,
                new_name=new_name if new_name is not None else KEEP,
                description=description if description is not None else KEEP,
                rate_limit=limit,
            )
            return tool.name

    typer.echo(f"updated tool {run(ctx, work)}")


@app.command("attach")
def attach(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="A local tool name, a tool id, or an upstream tool as slug__tool.")],
    server: Annotated[str, typer.Option("--server", help="The server to attach it to.")],
    as_name: Annotated[str | None, typer.Option("--name", help="The name the server exposes it under.")] = None,
    description: Annotated[str | None, typer.Option("--description", help="Override the description.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Attach a tool to a server; connected clients see it at once."""

    async def work(env: Env) -> ToolRow:
        async with env.transaction() as session:
            org = await env.org(session)
            target = await get_server(session, org_id=org.id, name_or_slug=server)
            found = await find_tool(session, org_id=org.id, name=tool)
            return await attach_tool(
                session, server=target, tool=found, override_name=as_name, override_description=description
            )

    row = run(ctx, work)
    if as_json:
        emit_json(tool_json(row))
    else:
        typer.echo(f"attached {row.upstream_name} to server {row.server} as {row.name}")


@app.command("detach")
def detach(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="A local tool name, a tool id, or slug__tool.")],
    server: Annotated[str, typer.Option("--server", help="The server to take it off.")],
) -> None:
    """Take a tool off a server; connected clients stop seeing it at once."""

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            target = await get_server(session, org_id=org.id, name_or_slug=server)
            found = await find_tool(session, org_id=org.id, name=tool)
            await detach_tool(session, server=target, tool=found)
            return target.slug

    typer.echo(f"detached {tool} from server {run(ctx, work)}")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Local tool name.")],
) -> None:
    """Delete a local tool with its keys; servers that had it drop it at once."""

    async def work(env: Env) -> None:
        async with env.transaction() as session:
            org = await env.org(session)
            await delete_local_tool(session, org_id=org.id, name=name)

    run(ctx, work)
    typer.echo(f"deleted tool {name}")


def review_json(review: ToolReview) -> dict[str, Any]:
    """A quarantined tool as JSON."""
    return {
        "name": review.name,
        "tool_id": review.tool_id,
        "upstream": review.upstream,
        "status": review.status,
        "approved": review.approved,
        "offered": review.pending,
        "diff": review.diff,
    }


@app.command("review")
def review(ctx: typer.Context, server: ServerOption = None, as_json: JsonOption = False) -> None:
    """Quarantined tools: how their upstream changed them since they were approved."""

    async def work(env: Env) -> list[ToolReview]:
        async with env.transaction() as session:
            org = await env.org(session)
            chosen = await get_server(session, org_id=org.id, name_or_slug=server) if server else None
            return await quarantined_tools(session, org_id=org.id, server=chosen)

    reviews = run(ctx, work)
    if as_json:
        emit_json([review_json(r) for r in reviews])
        return
    if not reviews:
        typer.echo("no tools await review")
        return
    typer.echo(f"{plural(len(reviews), 'tool')} quarantined; decide with: patchbay tool approve|reject NAME")
    for item in reviews:
        typer.echo(f"\n== {item.name} (upstream {item.upstream})")
        typer.echo(item.diff.rstrip("\n"))


ToolArgument = Annotated[str, typer.Argument(help="upstream__tool, a server's exposed name (with --server), or an id.")]
ReadAsOption = Annotated[str | None, typer.Option("--server", help="Read TOOL as this server's exposed name.")]


def _decide(ctx: typer.Context, tool: str, server: str | None, as_json: bool, *, decision: Decision) -> None:
    async def work(env: Env) -> ToolReview:
        async with env.transaction() as session:
            org = await env.org(session)
            chosen = await get_server(session, org_id=org.id, name_or_slug=server) if server else None
            return await decide_tool(session, decision=decision, org_id=org.id, name=tool, server=chosen, channel="cli")

    decided = run(ctx, work)
    if as_json:
        emit_json(review_json(decided))
        return
    typer.echo(f"{'approved' if decision == 'approve' else 'rejected'} {decided.name}")


@app.command("approve")
def approve(ctx: typer.Context, tool: ToolArgument, server: ReadAsOption = None, as_json: JsonOption = False) -> None:
    """Accept the changed definition of a quarantined (or rejected) tool; clients see it again at once."""
    _decide(ctx, tool, server, as_json, decision="approve")


@app.command("reject")
def reject(ctx: typer.Context, tool: ToolArgument, server: ReadAsOption = None, as_json: JsonOption = False) -> None:
    """Refuse a quarantined tool's changed definition: it stays unlisted and uncallable."""
    _decide(ctx, tool, server, as_json, decision="reject")
