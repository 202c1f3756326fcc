"""An upstream MCP server (official SDK, Streamable HTTP) protected by OAuth, for tests.

Every ``/mcp`` request must carry a bearer the authorization server's introspection
endpoint calls active, issued for this server's URL (audience) with the required scope;
otherwise 401 with ``WWW-Authenticate: Bearer resource_metadata=...`` (RFC 9728). Its
``whoami`` tool answers whose token reached it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import mcp_types as types
from mcp.server import Server
from mcp.server.context import ServerRequestContext
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

REQUIRED_SCOPE = "tools.read"
_WHOAMI = types.Tool(name="whoami", description="Who the bearer token belongs to.", input_schema={"type": "object"})


@dataclass
class Guard:
    """The resource server's view of tokens: what it accepted and refused."""

    resource: str = ""  # this server's URL, which tokens must name as their audience
    introspection: str = ""
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def metadata_url(self) -> str:
        base = self.resource.partition("/mcp")[0]
        return f"{base}/.well-known/oauth-protected-resource/mcp"

    async def check(self, authorization: str) -> dict[str, Any] | None:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        async with httpx.AsyncClient() as http:
            info = (await http.post(self.introspection, data={"token": token})).json()
        if not info.get("active") or info.get("aud") != self.resource:
            return None
        if REQUIRED_SCOPE not in str(info.get("scope", "")).split():
            return None
        self.seen[token] = info
        self.accepted.append(token)
        return dict(info)


def _server(guard: Guard) -> Server[Any]:
    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[_WHOAMI])

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        request = ctx.request
        assert isinstance(request, Request)
        token = request.headers.get("authorization", "").partition(" ")[2]
        info = guard.seen.get(token, {})
        who = {"sub": info.get("sub"), "client_id": info.get("client_id"), "scope": info.get("scope"), "token": token}
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(who))])

    return Server("oauth-upstream", version="1.0.0", on_list_tools=list_tools, on_call_tool=call_tool)


def protected_app(guard: Guard) -> ASGIApp:
    """The SDK's Streamable HTTP app behind the bearer check, plus the resource metadata document."""
    open_transport = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    inner = _server(guard).streamable_http_app(streamable_http_path="/mcp", transport_security=open_transport)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await inner(scope, receive, send)
            return
        if scope["path"] == "/.well-known/oauth-protected-resource/mcp":
            issuer = guard.introspection.rsplit("/", 1)[0]
            doc = {"resource": guard.resource, "authorization_servers": [issuer], "scopes_supported": [REQUIRED_SCOPE]}
            await JSONResponse(doc)(scope, receive, send)
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if await guard.check(headers.get("authorization", "")) is None:
            guard.refused += 1
            challenge = f'Bearer resource_metadata="{guard.metadata_url}", scope="{REQUIRED_SCOPE}"'
            if "authorization" in headers:
                challenge += ', error="invalid_token"'
            response = JSONResponse(
                {"error": "invalid_token"}, status_code=401, headers={"www-authenticate": challenge}
            )
            await response(scope, receive, send)
            return
        await inner(scope, receive, send)

    return app
