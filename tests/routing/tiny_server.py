"""A throwaway stdio MCP server on the standard library alone, so pool tests start processes fast.

It speaks the 2025-11-25 handshake (and refuses ``server/discover`` like a pre-2026 server)
with three tools: ``echo``; ``sample``, which asks the client's model and returns its text;
``ping``, which pings the client and returns the JSON of its answer.
"""

from __future__ import annotations

import json
import sys
from typing import Any

TOOLS = [
    {"name": "echo", "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}}},
    {"name": "sample", "inputSchema": {"type": "object"}},
    {"name": "ping", "inputSchema": {"type": "object"}},
]


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(request_id: Any, value: dict[str, Any]) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def main() -> None:
    waiting: dict[str, Any] = {}  # our request to the client -> the tools/call it serves
    for line in sys.stdin:
        message = json.loads(line)
        method, request_id = message.get("method"), message.get("id")
        params = message.get("params") or {}
        if method is None and request_id in waiting:
            answer = message.get("result", message.get("error"))
            text = answer["content"]["text"] if request_id.startswith("s") else json.dumps(answer)
            result(waiting.pop(request_id), {"content": [{"type": "text", "text": text}]})
        elif method == "initialize":
            info = {"name": "tiny", "version": "1"}
            result(
                request_id,
                {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": info},
            )
        elif method == "server/discover":
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "Method not found"}})
        elif method == "tools/list":
            result(request_id, {"tools": TOOLS})
        elif method == "tools/call" and params.get("name") == "sample":
            waiting[f"s{request_id}"] = request_id
            messages = [{"role": "user", "content": {"type": "text", "text": "hi"}}]
            sampling = {"messages": messages, "maxTokens": 8}
            send(
                {
                    "jsonrpc": "2.0",
                    "id": f"s{request_id}",
                    "method": "sampling/createMessage",
                    "params": sampling,
                }
            )
        elif method == "tools/call" and params.get("name") == "ping":
            waiting[f"p{request_id}"] = request_id
            send({"jsonrpc": "2.0", "id": f"p{request_id}", "method": "ping"})
        elif method == "tools/call":
            text = str(params.get("arguments", {}).get("text", ""))
            result(request_id, {"content": [{"type": "text", "text": text}]})
        elif request_id is not None:
            send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32601, "message": "Method not found"}})


if __name__ == "__main__":
    main()
