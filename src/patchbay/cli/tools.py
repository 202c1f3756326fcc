"""``patchbay tool``: tools by the names clients see."""

from __future__ import annotations

from typing import Annotated

import typer

from patchbay.cli.output import emit_json
from patchbay.cli.runtime import Env, run
from patchbay.cli.servers import tool_json, tool_table
from patchbay.services.servers import get_server
from patchbay.services.tools import ToolRow, list_tools

app = typer.Typer(help="Tools.", no_args_is_help=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    server: Annotated[str | None, typer.Option("--server", help="Only this server's tools.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
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
