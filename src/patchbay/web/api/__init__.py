"""The REST API under ``/api/v1``: a FastAPI application that ``app.Edge`` hands those paths to.

Conventions (docs/decisions/0004-rest-api-skeleton.md): one router module per noun,
thin routes over services, errors only as ``{"error": {"code", "message"}}``, lists as
``{"items", "next_cursor"}``, and authorization declared per route with ``Requires``.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from patchbay.auth.sessions import LoginSessions
from patchbay.runtime import Gateway
from patchbay.web.api import (
    attachments,
    auth,
    catalog,
    configs,
    connections,
    credentials,
    documents,
    execute,
    installation,
    keys,
    logs,
    me,
    members,
    orgs,
    servers,
    tool_keys,
    tool_review,
    tools,
    upstreams,
    users,
)
from patchbay.web.api.errors import install_error_handlers
from patchbay.web.api.nul import refuse_nul

PREFIX = "/api/v1"
ROUTERS: tuple[APIRouter, ...] = (
    auth.router,
    me.router,
    users.router,
    orgs.router,
    members.router,
    upstreams.router,
    configs.router,
    catalog.router,
    servers.router,
    tools.router,
    tool_review.router,
    attachments.router,
    documents.router,
    tool_keys.router,
    execute.router,
    keys.router,
    credentials.router,
    connections.router,
    logs.router,
    installation.router,
)


def create_api(gateway: Gateway) -> FastAPI:
    """The ``/api/v1`` application over a gateway's database, shared store and secret."""
    api = FastAPI(
        title="Patchbay",
        version="1",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        dependencies=[Depends(refuse_nul)],
    )
    api.state.gateway = gateway
    api.state.login_sessions = LoginSessions(gateway.store, ttl=gateway.settings.login_session_ttl_seconds)
    install_error_handlers(api)
    for router in ROUTERS:
        api.include_router(router, prefix=PREFIX)
    return api
