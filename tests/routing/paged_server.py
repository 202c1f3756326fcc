"""A throwaway stdio MCP server whose tools/list comes in pages of two (for discovery paging)."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.stdio import stdio_server

NAMES = ("alpha", "beta", "gamma", "delta", "epsilon")


async def list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    start = int(params.cursor) if params is not None and params.cursor else 0
    page = NAMES[start : start + 2]
    tools = [types.Tool(name=name, input_schema={"type": "object"}) for name in page]
    more = start + 2 < len(NAMES)
    return types.ListToolsResult(tools=tools, next_cursor=str(start + 2) if more else None)


async def main() -> None:
    server: Server[Any] = Server("paged", version="1.0.0", on_list_tools=list_tools)
    async with stdio_server() as (read_stream, write_stream):
        await server.run(read_stream, write_stream, server.create_initialization_options())


if __name__ == "__main__":
    anyio.run(main)
