"""The ASGI application: routes, lifespan, and ``serve``.

Every MCP request runs the pipeline written out in ``patchbay.web.mcp_endpoint``:
edge checks → authenticate → era → catalog → authorize + route (handler) → respond → audit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from sqlalchemy import text
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from patchbay.runtime import Gateway, build_gateway
from patchbay.settings import Settings
from patchbay.web.api import create_api
from patchbay.web.h1_server import H1Protocol
from patchbay.web.mcp_endpoint import McpEndpoint
from patchbay.web.metrics import metrics_endpoint

logger = logging.getLogger(__name__)


class Edge:
    """Sends MCP traffic straight to the endpoint; everything else (and lifespan) to Starlette.

    The MCP endpoint is raw ASGI already; skipping the router and its middleware stack
    for it is measurable on the proxied-call benchmark.
    """

    def __init__(self, mcp: McpEndpoint, app: Starlette, api: ASGIApp | None = None) -> None:
        self.mcp = mcp
        self.app = app
        self.api = api
        self.state = app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path == "/mcp":
                scope["path_params"] = {}
                await self.mcp(scope, receive, send)
                return
            if path.startswith("/mcp/k/") and "/" not in path[7:]:
                scope["path_params"] = {"key": path[7:]}
                await self.mcp(scope, receive, send)
                return
            if self.api is not None and (path == "/api/v1" or path.startswith("/api/v1/")):
                await self.api(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(settings: Settings, *, gateway: Gateway | None = None) -> Edge:
    """Build the application; the gateway's resources open in the lifespan."""
    gw = gateway or build_gateway(settings)
    mcp = McpEndpoint(gw)

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        checks: dict[str, str] = {}
        try:
            async with gw.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure instead of raising
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            checks["shared_store"] = "ok" if await asyncio.wait_for(gw.store.ping(), 2.0) else "error"
        except Exception as exc:  # noqa: BLE001 - same: report, don't raise
            checks["shared_store"] = f"error: {type(exc).__name__}"
        try:
            await asyncio.wait_for(gw.objects.ping(), 5.0)
            checks["object_store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - same: report, don't raise
            checks["object_store"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"status": "ready" if ready else "not ready", "checks": checks}, 200 if ready else 503)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.aclose()

    app = Starlette(
        routes=[
            Route("/mcp", mcp, methods=["GET", "POST", "DELETE"]),
            Route("/mcp/k/{key}", mcp, methods=["GET", "POST", "DELETE"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics_endpoint),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return Edge(mcp, app, create_api(gw))


def server_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How uvicorn runs the gateway (``serve`` and the tests alike): our HTTP/1.1 protocol (decision 0014)."""
    return uvicorn.Config(app, **server_options(settings, **overrides))


def server_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """uvicorn's options for the gateway: our HTTP/1.1 protocol, no access log, lifespan on."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "http": H1Protocol,
        "access_log": False,  # paths can hold keys (/mcp/k/...); the audit trail records requests instead
        "log_config": None,
        "lifespan": "on",
        "proxy_headers": settings.trust_proxy_headers,
        "server_header": False,  # names the software to every caller, and is a header per response
        "timeout_graceful_shutdown": 10,
    }
    options.update(overrides)
    return options


def serve(settings: Settings) -> None:
    """Apply migrations, then run the gateway until SIGINT/SIGTERM (which drain the audit queue)."""
    from patchbay.bootstrap import prepare_database
    from patchbay.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    prepare_database(settings)
    app = create_app(settings)
    logger.info("Patchbay listening on http://%s:%s/mcp", settings.host, settings.port)
    uvicorn.run(app, **server_options(settings))
