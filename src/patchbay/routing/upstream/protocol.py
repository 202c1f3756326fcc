"""Protocol-era negotiation with an upstream and the per-request stamping each era needs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp import param_headers
from patchbay.routing.upstream.base import GATEWAY_CLIENT_INFO, Era

MODERN_VERSIONS: tuple[str, ...] = ("2026-07-28",)
HANDSHAKE_VERSIONS: tuple[str, ...] = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25")
LATEST_MODERN = MODERN_VERSIONS[-1]
LATEST_HANDSHAKE = HANDSHAKE_VERSIONS[-1]

UNSUPPORTED_PROTOCOL_VERSION = -32022
REQUEST_TIMEOUT = -32001

VERSION_KEY = "io.modelcontextprotocol/protocolVersion"
CAPABILITIES_KEY = "io.modelcontextprotocol/clientCapabilities"
CLIENT_INFO_KEY = "io.modelcontextprotocol/clientInfo"
SERVER_INFO_KEY = "io.modelcontextprotocol/serverInfo"
# Envelope keys a downstream modern client may have put in _meta; they describe that client, not us.
ENVELOPE_KEYS = (VERSION_KEY, CAPABILITIES_KEY, CLIENT_INFO_KEY, "io.modelcontextprotocol/logLevel")
_ENVELOPE_SET = frozenset(ENVELOPE_KEYS)

# Envelope keys a caller may set for the client it acts for.
_CALLER_KEYS = (CAPABILITIES_KEY, "io.modelcontextprotocol/logLevel")

# The gateway relays sampling, elicitation and roots requests to the downstream client that caused them.
CLIENT_CAPABILITIES: JSONObject = {"sampling": {}, "elicitation": {"form": {}, "url": {}}, "roots": {}}

# Methods whose params name a target mirrored into the Mcp-Name header (modern HTTP).
NAME_PARAMS = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}

# Sends one request (params already complete) and returns the raw JSON-RPC response.
RawCall = Callable[[str, JSONObject], Awaitable[JSONObject]]


@dataclass(frozen=True)
class Negotiated:
    """What the handshake or discovery settled: era, version and the server's self-description."""

    protocol_version: str
    modern: bool
    server_info: JSONObject
    capabilities: JSONObject
    instructions: str | None


def envelope(version: str) -> JSONObject:
    """The per-request ``_meta`` envelope a modern request carries."""
    return {VERSION_KEY: version, CAPABILITIES_KEY: CLIENT_CAPABILITIES, CLIENT_INFO_KEY: GATEWAY_CLIENT_INFO}


def stamp_modern(params: JSONObject | None, env: JSONObject) -> JSONObject:
    """Params with the gateway's envelope merged into ``_meta`` (the caller's dict is not modified).

    Version and client identity are the gateway's; capabilities and log level the caller put
    there describe the downstream client the request is for, and win.
    """
    if params is None:
        return {"_meta": env}
    out = dict(params)
    meta = out.get("_meta")
    if not isinstance(meta, dict) or not meta:
        out["_meta"] = env
        return out
    merged = {**meta, **env}
    for key in _CALLER_KEYS:
        if key in meta:
            merged[key] = meta[key]
    out["_meta"] = merged
    return out


def strip_envelope(params: JSONObject | None) -> JSONObject | None:
    """Params without a downstream client's modern envelope keys, which a legacy upstream rejects."""
    if params is None:
        return None
    meta = params.get("_meta")
    if not isinstance(meta, dict) or meta.keys().isdisjoint(ENVELOPE_KEYS):
        return params
    out = params.copy()
    if meta.keys() <= _ENVELOPE_SET:
        # Nothing but the envelope (what every forwarded request carries): the upstream gets no
        # ``_meta`` at all rather than an empty one.
        del out["_meta"]
    else:
        out["_meta"] = {key: value for key, value in meta.items() if key not in _ENVELOPE_SET}
    return out


def modern_headers(base: dict[str, str], version: str, method: str, params: JSONObject | None) -> dict[str, str]:
    """``base`` plus the routing headers a modern HTTP request carries (they must agree with the body)."""
    headers = {**base, "mcp-protocol-version": version, "mcp-method": method}
    key = NAME_PARAMS.get(method)
    if key is not None and params is not None and isinstance(name := params.get(key), str):
        headers["mcp-name"] = param_headers.encode(name)
    return headers


def _error_code(response: JSONObject) -> int | None:
    error = response.get("error")
    return error.get("code") if isinstance(error, dict) else None


def _supported(response: JSONObject) -> list[str] | None:
    """The ``supported`` list of a -32022 error, if it is well formed."""
    data = response["error"].get("data")
    supported = data.get("supported") if isinstance(data, dict) else None
    if isinstance(supported, list) and all(isinstance(v, str) for v in supported):
        return supported
    return None


def _mutual_modern(versions: list[str] | None) -> str | None:
    mutual = [v for v in MODERN_VERSIONS if v in (versions or ())]
    return mutual[-1] if mutual else None


def _as_object(value: Any) -> JSONObject:
    return value if isinstance(value, dict) else {}


def _adopt_discover(result: JSONObject, version: str) -> Negotiated:
    meta = _as_object(result.get("_meta"))
    instructions = result.get("instructions")
    return Negotiated(
        protocol_version=version,
        modern=True,
        server_info=_as_object(meta.get(SERVER_INFO_KEY)),
        capabilities=_as_object(result.get("capabilities")),
        instructions=instructions if isinstance(instructions, str) else None,
    )


async def initialize(name: str, call: RawCall) -> Negotiated | JSONObject:
    """Send ``initialize``; return the settled state, or a -32022 error response for a re-probe.

    The caller sends ``notifications/initialized`` once it has adopted the result.
    """
    response = await call(
        "initialize",
        {
            "protocolVersion": LATEST_HANDSHAKE,
            "capabilities": CLIENT_CAPABILITIES,
            "clientInfo": GATEWAY_CLIENT_INFO,
        },
    )
    if _error_code(response) == UNSUPPORTED_PROTOCOL_VERSION:
        return response
    if "error" in response:
        error = response["error"]
        raise UpstreamError(f"upstream {name!r} refused initialize: {error.get('message')} ({error.get('code')})")
    result = _as_object(response.get("result"))
    version = result.get("protocolVersion")
    if version not in HANDSHAKE_VERSIONS:
        raise UpstreamError(f"upstream {name!r} answered initialize with unsupported protocol version {version!r}")
    instructions = result.get("instructions")
    return Negotiated(
        protocol_version=version,
        modern=False,
        server_info=_as_object(result.get("serverInfo")),
        capabilities=_as_object(result.get("capabilities")),
        instructions=instructions if isinstance(instructions, str) else None,
    )


async def negotiate(name: str, era: Era, call: RawCall) -> Negotiated:
    """Settle the era: probe ``server/discover`` and fall back to ``initialize`` unless told otherwise.

    Only positive evidence of a modern server keeps the connection modern; any other
    error answer to the probe (method not found, a bare HTTP 4xx, a timeout) is read
    as "legacy server".  ``call`` may turn a probe timeout into a -32001 error response.
    """
    version = LATEST_MODERN
    for attempt in range(2):
        if era != "legacy":
            response = await call("server/discover", {"_meta": envelope(version)})
            code = _error_code(response)
            if code is None:
                result = _as_object(response.get("result"))
                versions = result.get("supportedVersions")
                mutual = _mutual_modern(versions if isinstance(versions, list) else None)
                if mutual is not None:
                    return _adopt_discover(result, mutual)
            elif code == UNSUPPORTED_PROTOCOL_VERSION:
                supported = _supported(response)
                mutual = _mutual_modern(supported)
                if mutual is not None and attempt == 0:
                    version = mutual
                    continue
                if supported is not None and not any(v in HANDSHAKE_VERSIONS for v in supported):
                    raise UpstreamError(
                        f"upstream {name!r} speaks only protocol versions {', '.join(supported)}, "
                        f"none of which the gateway supports"
                    )
            if era == "modern":
                error = _as_object(response.get("error"))
                reason = f"{error.get('message')} ({error.get('code')})"
                raise UpstreamError(f"upstream {name!r} does not speak the 2026-07-28 protocol: {reason}")
        settled = await initialize(name, call)
        if isinstance(settled, Negotiated):
            return settled
        # A -32022 answer to initialize is modern evidence (e.g. a probe that timed out on our
        # side but locked the server modern): re-probe once at a version it names.
        mutual = _mutual_modern(_supported(settled))
        if mutual is None or attempt == 1 or era == "legacy":
            raise UpstreamError(f"upstream {name!r} rejected the protocol version: {settled['error'].get('message')}")
        version = mutual
        era = "modern"
    raise AssertionError("unreachable")


class _Closable(Protocol):
    async def aclose(self) -> None: ...


async def settle(
    conn: _Closable, name: str, connect_timeout: float, steps: Awaitable[None], hint: Callable[[], str] = str
) -> None:
    """Run a new connection's opening ``steps`` within ``connect_timeout``; close it if they fail."""
    try:
        async with asyncio.timeout(connect_timeout):
            await steps
    except TimeoutError:
        await conn.aclose()
        raise UpstreamTimeout(
            f"upstream {name!r} did not complete the MCP handshake within {connect_timeout:g} s{hint()}"
        ) from None
    except BaseException:
        await conn.aclose()
        raise
