"""Compact mode: two tools (search, call) stand in for hundreds of tool definitions.

Clients drowning in tools list only ``search_tools`` and ``call_tool``; search answers
with the definitions of matching tools the key may use, and ``call_tool`` runs one of
them by name. Authorization is the same as for a direct call: the underlying tool is
decided for the key, and the audit record names it.
"""

from __future__ import annotations

from typing import Any

import orjson

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.protocol import INVALID_PARAMS, RpcError

SEARCH = "search_tools"
CALL = "call_tool"
DEFAULT_LIMIT = 20
MAX_LIMIT = 100

TOOLS: list[JSONObject] = [
    {
        "name": SEARCH,
        "description": (
            "Find tools by keywords in their names and descriptions. Returns each match's name, "
            "description and input schema; run one with call_tool."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words to look for; empty lists every tool."},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
            },
        },
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": CALL,
        "description": "Run a tool found with search_tools, by its name, with arguments matching its input schema.",
        "inputSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
            "required": ["name"],
        },
    },
]


def search(visible: list[JSONObject], arguments: Any) -> JSONObject:
    """The visible tool definitions matching every word of the query, best (name hits) first."""
    args = arguments if isinstance(arguments, dict) else {}
    query = args.get("query", "")
    limit = args.get("limit", DEFAULT_LIMIT)
    if not isinstance(query, str) or not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise RpcError(INVALID_PARAMS, "search_tools takes {query: string, limit: positive integer}")
    words = query.lower().split()
    scored: list[tuple[int, str, JSONObject]] = []
    for tool in visible:
        name = str(tool.get("name", ""))
        text = f"{name} {tool.get('title') or ''} {tool.get('description') or ''}".lower()
        if all(word in text for word in words):
            scored.append((-sum(word in name.lower() for word in words), name, tool))
    scored.sort(key=lambda item: (item[0], item[1]))
    found = [
        {k: tool[k] for k in ("name", "title", "description", "inputSchema", "annotations") if k in tool}
        for _score, _name, tool in scored[: min(limit, MAX_LIMIT)]
    ]
    payload: JSONObject = {"tools": found, "total": len(scored)}
    return {"content": [{"type": "text", "text": orjson.dumps(payload).decode()}], "structuredContent": payload}


def unwrap_call(arguments: Any) -> tuple[str, Any]:
    """The underlying tool's name and arguments of a ``call_tool`` call."""
    args = arguments if isinstance(arguments, dict) else {}
    name = args.get("name")
    if not isinstance(name, str) or not name:
        raise RpcError(INVALID_PARAMS, "call_tool needs the name of a tool (find one with search_tools)")
    inner = args.get("arguments", {})
    if not isinstance(inner, dict):
        raise RpcError(INVALID_PARAMS, "call_tool's arguments must be an object")
    return name, inner
