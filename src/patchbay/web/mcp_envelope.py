"""The checks of a POST before any handler runs: the rejection they raise and the 2026-07-28 envelope ladder."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from starlette.types import Scope

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.protocol import (
    HEADER_MISMATCH,
    INVALID_PARAMS,
    META_CLIENT_CAPABILITIES,
    META_PROTOCOL_VERSION,
    MODERN_VERSIONS,
    NAME_PARAM,
    UNSUPPORTED_PROTOCOL_VERSION,
)
from patchbay.web.asgi import duplicated

_ROUTING_HEADERS = frozenset({b"mcp-protocol-version", b"mcp-method", b"mcp-name"})


class HttpReject(Exception):
    """An answer decided before any handler runs."""

    def __init__(self, status: int, code: int, message: str, data: Any = None, request_id: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.data, self.request_id = (
            status,
            code,
            message,
            data,
            request_id,
        )


def has_envelope(params: JSONObject) -> bool:
    """True when ``params`` carries a 2026-07-28 ``_meta`` envelope."""
    meta = params.get("_meta")
    return isinstance(meta, dict) and META_PROTOCOL_VERSION in meta


def modern_envelope(
    scope: Scope, headers: dict[str, str], method: str, request_id: Any, params: JSONObject
) -> tuple[str, Any]:
    """The 2026-07-28 validation ladder: envelope, routing headers, then version."""
    meta = params.get("_meta")
    if not isinstance(meta, dict) or META_PROTOCOL_VERSION not in meta or META_CLIENT_CAPABILITIES not in meta:
        raise HttpReject(
            400,
            INVALID_PARAMS,
            f"params._meta must carry {META_PROTOCOL_VERSION!r} and {META_CLIENT_CAPABILITIES!r}",
            request_id=request_id,
        )
    version = meta[META_PROTOCOL_VERSION]
    # The map keeps one value per name: only a request whose map is shorter than its header list
    # repeats a header, and only then is the list searched for a repeated routing header.
    dup = duplicated(scope, _ROUTING_HEADERS) if len(headers) != len(scope["headers"]) else None
    if dup is not None:
        raise HttpReject(400, HEADER_MISMATCH, f"header {dup} was sent more than once", request_id=request_id)
    if _header(headers, "mcp-protocol-version") != version:
        raise HttpReject(
            400,
            HEADER_MISMATCH,
            "MCP-Protocol-Version header does not match the request's protocol version",
            request_id=request_id,
        )
    if _header(headers, "mcp-method") != method:
        raise HttpReject(
            400,
            HEADER_MISMATCH,
            "Mcp-Method header does not match the request's method",
            request_id=request_id,
        )
    name_key = NAME_PARAM.get(method)
    wanted = params.get(name_key) if name_key is not None else None
    if wanted is not None and _decode_header(_header(headers, "mcp-name")) != wanted:
        raise HttpReject(
            400,
            HEADER_MISMATCH,
            f"Mcp-Name header does not match the request's {name_key!r}",
            request_id=request_id,
        )
    if not isinstance(version, str):
        raise HttpReject(400, INVALID_PARAMS, "the protocol version must be a string", request_id=request_id)
    if version not in MODERN_VERSIONS:
        raise HttpReject(
            400,
            UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            {"supported": list(MODERN_VERSIONS), "requested": version},
            request_id=request_id,
        )
    return version, meta[META_CLIENT_CAPABILITIES]


def _header(headers: dict[str, str], name: str) -> str | None:
    # Surrounding whitespace is not part of a field value (RFC 9110 §5.5); not every server strips it.
    value = headers.get(name)
    return value.strip() if value is not None else None


def _decode_header(value: str | None) -> str | None:
    """Mcp-Name values that are not plain ASCII arrive as ``=?base64?...?=``."""
    if value is None or not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
