"""The baseline: a minimal Starlette + orjson JSON-RPC MCP server over Streamable HTTP.

One tool, ``echo``, that returns its ``text`` argument. Every answer is a plain
``application/json`` body (never SSE), so its CPU cost is about the least a Python
MCP server on Starlette can spend per call: the yardstick for the gateway.

Eras: by default it is a 2025-11-25 ("legacy") server. It answers ``server/discover``
with JSON-RPC error -32601 (method not found), which is what a pre-2026 server
says and what makes an auto-negotiating client (the gateway) fall back to
``initialize``. ``--modern`` also implements the 2026-07-28 ``server/discover``
result and answers stateless requests that carry the ``MCP-Protocol-Version:
2026-07-28`` header, for measuring the gateway's modern upstream path.

    python bench/echo_upstream.py --port 9100 [--modern]
"""

from __future__ import annotations

import argparse
import secrets
from collections.abc import Callable
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

LEGACY_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
MODERN_VERSION = "2026-07-28"
SERVER_INFO = {"name": "bench-echo", "version": "1.0.0"}
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"

METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
PARSE_ERROR = -32700
INVALID_REQUEST = -32600

ECHO_TOOL = {
    "name": "echo",
    "description": "Returns the text it is given.",
    "inputSchema": {
        "type": "object",
        "properties": {"text": {"type": "string", "description": "what to send back"}},
        "required": ["text"],
    },
    "annotations": {"readOnlyHint": True, "idempotentHint": True},
}

JSON = "application/json"

Params = dict[str, Any]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def tools_list(params: Params) -> Params:
    return {"tools": [ECHO_TOOL]}


def tools_call(params: Params) -> Params:
    if params.get("name") != "echo":
        raise RpcError(INVALID_PARAMS, f"Unknown tool: {params.get('name')!r}")
    arguments = params.get("arguments")
    text = arguments.get("text") if isinstance(arguments, dict) else None
    if not isinstance(text, str):
        raise RpcError(INVALID_PARAMS, "echo needs a string argument 'text'")
    return {"content": [{"type": "text", "text": text}]}


def ping(params: Params) -> Params:
    return {}


HANDLERS: dict[str, Callable[[Params], Params]] = {
    "tools/list": tools_list,
    "tools/call": tools_call,
    "ping": ping,
}


def _reply(body: Params, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _error(request_id: Any, code: int, message: str, status: int = 200) -> Response:
    return _reply({"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}, status)


def build_app(*, modern: bool = False) -> Starlette:
    """The echo server's ASGI app; ``modern`` adds the 2026-07-28 stateless era."""
    sessions: set[str] = set()

    def initialize(params: Params) -> tuple[Params, dict[str, str]]:
        asked = params.get("protocolVersion")
        version = asked if asked in LEGACY_VERSIONS else LEGACY_VERSIONS[0]
        session_id = secrets.token_hex(16)
        sessions.add(session_id)
        result = {"protocolVersion": version, "capabilities": {"tools": {}}, "serverInfo": SERVER_INFO}
        return result, {"mcp-session-id": session_id}

    def discover(params: Params) -> Params:
        if not modern:
            raise RpcError(METHOD_NOT_FOUND, "Method not found: server/discover")
        return {
            "resultType": "complete",
            "supportedVersions": [MODERN_VERSION],
            "capabilities": {"tools": {}},
            "cacheScope": "private",
            "ttlMs": 0,
            "_meta": {SERVER_INFO_KEY: SERVER_INFO},
        }

    async def mcp(request: Request) -> Response:
        if request.method == "GET":
            # No standalone server→client stream: the spec's answer is 405.
            return Response(status_code=405)
        session_id = request.headers.get("mcp-session-id")
        if request.method == "DELETE":
            if session_id in sessions:
                sessions.discard(session_id)
                return Response(status_code=200)
            return Response(status_code=404)
        try:
            message = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(None, PARSE_ERROR, "Parse error", 400)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error(None, INVALID_REQUEST, "Invalid Request", 400)
        method = message.get("method")
        if "id" not in message:
            # Notifications (notifications/initialized, cancelled) and client responses.
            return Response(status_code=202)
        request_id = message["id"]
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return _error(request_id, INVALID_PARAMS, "params must be an object")
        is_modern = modern and request.headers.get("mcp-protocol-version") == MODERN_VERSION
        try:
            if method == "initialize":
                result, headers = initialize(params)
                return _reply({"jsonrpc": "2.0", "id": request_id, "result": result}, headers=headers)
            if method == "server/discover":
                result = discover(params)
            else:
                if not is_modern and session_id not in sessions:
                    status = 404 if session_id is not None else 400
                    return _error(request_id, INVALID_REQUEST, "missing or unknown Mcp-Session-Id", status)
                handler = HANDLERS.get(method) if isinstance(method, str) else None
                if handler is None:
                    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
                result = handler(params)
                if is_modern:
                    result = {**result, "resultType": "complete"}
                    if method == "tools/list":
                        result.update(ttlMs=0, cacheScope="private")
        except RpcError as exc:
            return _error(request_id, exc.code, exc.message)
        return _reply({"jsonrpc": "2.0", "id": request_id, "result": result})

    return Starlette(routes=[Route("/mcp", mcp, methods=["GET", "POST", "DELETE"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--modern", action="store_true", help="also speak the 2026-07-28 era")
    args = parser.parse_args()
    uvicorn.run(
        build_app(modern=args.modern),
        host=args.host,
        port=args.port,
        workers=1,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
