"""Protocol constants and JSON-RPC message builders (messages are plain dicts)."""

from __future__ import annotations

from typing import Any, Final

from patchbay.jsonrpc_types import JSONObject

MODERN_VERSION: Final = "2026-07-28"
MODERN_VERSIONS: Final = (MODERN_VERSION,)
LEGACY_VERSIONS: Final = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_LEGACY: Final = LEGACY_VERSIONS[0]

META_PROTOCOL_VERSION: Final = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES: Final = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO: Final = "io.modelcontextprotocol/clientInfo"
META_LOG_LEVEL: Final = "io.modelcontextprotocol/logLevel"
META_SERVER_INFO: Final = "io.modelcontextprotocol/serverInfo"
META_SUBSCRIPTION_ID: Final = "io.modelcontextprotocol/subscriptionId"

# JSON-RPC and MCP error codes.
PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603
CONNECTION_CLOSED: Final = -32000
REQUEST_TIMEOUT: Final = -32001
HEADER_MISMATCH: Final = -32020
MISSING_CLIENT_CAPABILITY: Final = -32021
# RFC 5424 severities, least severe first: a client asking for "warning" gets warning and above.
LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
UNSUPPORTED_PROTOCOL_VERSION: Final = -32022
RESOURCE_NOT_FOUND: Final = -32002
# Implementation-defined (the spec has no code for it): a rate limit refused the call; data.retryAfter in seconds.
RATE_LIMITED: Final = -32029
# 2025-11-25 URLElicitationRequiredError: the user must open a URL (here: connect an OAuth upstream).
URL_ELICITATION_REQUIRED: Final = -32042

# Name-bearing methods mirror one param into the Mcp-Name header (2026-07-28).
NAME_PARAM: Final[dict[str, str]] = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

# HTTP status for error codes on the modern wire; everything else is 200.
ERROR_HTTP_STATUS: Final[dict[int, int]] = {
    PARSE_ERROR: 400,
    INVALID_REQUEST: 400,
    INVALID_PARAMS: 400,
    HEADER_MISMATCH: 400,
    MISSING_CLIENT_CAPABILITY: 400,
    UNSUPPORTED_PROTOCOL_VERSION: 400,
    METHOD_NOT_FOUND: 404,
}

SERVER_INFO: Final[JSONObject] = {"name": "patchbay", "title": "Patchbay MCP gateway", "version": "0.1.0"}


class RpcError(Exception):
    """A JSON-RPC error to send to the client."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_error(self) -> JSONObject:
        err: JSONObject = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def result_message(request_id: Any, result: JSONObject) -> JSONObject:
    return {"jsonrpc": "2.0", "id": request_id, "result": result}


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> JSONObject:
    err: JSONObject = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": err}


def is_request(msg: JSONObject) -> bool:
    return "method" in msg and "id" in msg


def is_notification(msg: JSONObject) -> bool:
    return "method" in msg and "id" not in msg


def is_response(msg: JSONObject) -> bool:
    return "method" not in msg and "id" in msg and ("result" in msg or "error" in msg)
