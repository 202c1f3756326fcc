"""``patchbay tool``: tools by the names clients see; review and approve quarantined ones."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, plural
from patchbay.cli.runtime import Env, run
from patchbay.cli.servers import tool_json, tool_table
from patchbay.services.pinning import ToolReview, approve_tool, quarantined_tools
from patchbay.services.servers import get_server
from patchbay.services.tools import ToolRow, list_tools

app = typer.Typer(help="Tools.", no_args_is_help=True)

ServerOption = Annotated[str | None, typer.Option("--server", help="Only this server's tools.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("list")
def list_(ctx: typer.Context, server: ServerOption = None, as_json: JsonOption = False) -> None:
    """A server's tools, or every upstream tool of the organization (by default name)."""

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


def review_json(review: ToolReview) -> dict[str, Any]:
    """A quarantined tool as JSON."""
    return {
        "name": review.name,
        "tool_id": review.tool_id,
        "upstream": review.upstream,
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
    typer.echo(f"{plural(len(reviews), 'tool')} quarantined; approve with: patchbay tool approve NAME")
    for item in reviews:
        typer.echo(f"\n== {item.name} (upstream {item.upstream})")
        typer.echo(item.diff.rstrip("\n"))


@app.command("approve")
def approve(
    ctx: typer.Context,
    tool: Annotated[str, typer.Argument(help="upstream__tool, a server's exposed name (with --server), or an id.")],
    server: Annotated[str | None, typer.Option("--server", help="Read TOOL as this server's exposed name.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Accept the changed definition of a quarantined tool; clients see it again at once."""

    async def work(env: Env) -> ToolReview:
        async with env.transaction() as session:
            org = await env.org(session)
            chosen = await get_server(session, org_id=org.id, name_or_slug=server) if server else None
            return await approve_tool(session, org_id=org.id, name=tool, server=chosen, channel="cli")

    approved = run(ctx, work)
    if as_json:
        emit_json(review_json(approved))
        return
    typer.echo(f"approved {approved.name}")
