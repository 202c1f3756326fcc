"""``POST /api/v1/tools/{tool_id}/execute``: one tool call over REST, through the shared pipeline.

The route only authenticates (tool key, API key, or a signed-in member), finds the route
and shapes the answer; authorization, rate limits, execution and audit are
``pipeline.call_tool``'s, exactly as for MCP and the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from patchbay.auth.keys import KEY_PREFIX, TOOL_KEY_PREFIX
from patchbay.errors import InvalidInput, NotFound, PatchbayError, TooLarge, Unauthenticated
from patchbay.pipeline import HTTP_STATUS, Caller, authenticate
from patchbay.policy.access import OrgAccess
from patchbay.runtime import Gateway
from patchbay.services.execution import arguments_object, execute_direct, route_for, tool_org
from patchbay.services.orgs import list_my_orgs
from patchbay.services.paging import PageRequest
from patchbay.web.api.deps import Gw, bearer_token, current_caller, org_access
from patchbay.web.api.errors import ERROR_RESPONSES, error_doc, error_headers, error_response, status_of

router = APIRouter(tags=["execution"], responses=ERROR_RESPONSES)


ToolRef = Annotated[
    str,
    Path(
        description="The tool's id (a local tool also by its name; with an API key, the name its server exposes).",
        min_length=1,
        max_length=200,
    ),
]
OrgQuery = Annotated[
    str | None,
    Query(description="With a user session: the organization to act in (default: the tool's own)."),
]
_BODY = {
    "requestBody": {
        "required": False,
        "description": "The tool's arguments (empty: none).",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post(
    "/tools/{tool_id}/execute",
    summary="Execute a tool with a tool key (X-Tool-Key), an API key, or a user session",
    openapi_extra=_BODY,
    responses={
        200: {"description": "The tool's result", "content": {"application/json": {}}},
        400: error_doc(
            "Invalid arguments (the message names where the schema is violated), or a body that is not "
            "a JSON object, or a member of several orgs without ?org="
        ),
        502: error_doc("The tool's upstream failed or refused the call"),
        504: error_doc("The tool's upstream did not answer in time"),
    },
)
async def execute(tool_id: ToolRef, request: Request, gw: Gw, org: OrgQuery = None) -> JSONResponse:
    try:
        caller = await rest_caller(request, gw, tool=tool_id, org=org)
        arguments = await _arguments(request, gw)
        async with gw.sessionmaker() as session:
            route = await route_for(session, caller=caller, tool=tool_id, secret=gw.secret, catalogs=gw.catalogs)
        done = await execute_direct(
            gw.pipeline,
            channel="api",
            caller=caller,
            route=route,
            arguments=arguments,
            pool=gw.pool,
            timeout=gw.settings.upstream_timeout,
            keep=gw.audit.submit,
        )
    except PatchbayError as exc:
        status = HTTP_STATUS.get(exc.code) or status_of(exc)
        if status == 500:
            raise  # the API's handler answers without details
        return error_response(status, exc.code, str(exc) or exc.code, error_headers(exc, status))
    return JSONResponse(done.value)


async def rest_caller(request: Request, gw: Gateway, *, tool: str, org: str | None) -> Caller:
    """Stage 1 for REST: ``X-Tool-Key``, ``X-API-Key``, a key as bearer, else a member's session or token."""
    tool_key = request.headers.get("x-tool-key")
    if tool_key is not None:
        if not tool_key.strip().startswith(TOOL_KEY_PREFIX):
            raise Unauthenticated(f"X-Tool-Key takes a tool key ({TOOL_KEY_PREFIX}...)")
        return await authenticate(gw.pipeline, credential=tool_key.strip(), resolver=gw.resolver, secret=gw.secret)
    bearer = bearer_token(request)
    key = request.headers.get("x-api-key") or (
        bearer if bearer is not None and bearer.startswith((KEY_PREFIX, TOOL_KEY_PREFIX)) else None
    )
    if key is not None:
        return await authenticate(gw.pipeline, credential=key.strip(), resolver=gw.resolver, secret=gw.secret)
    async with gw.sessionmaker() as session:
        who = await current_caller(request, session)
        org_ref = org or await tool_org(session, tool=tool)
        if org_ref is None:
            mine = (await list_my_orgs(session, user_id=who.user.id, page=PageRequest(limit=2))).items
            if len(mine) != 1:
                raise InvalidInput("you belong to several organizations: name one with ?org=")
            org_ref = mine[0].org.id
        try:
            access: OrgAccess = await org_access(org_ref, who, session)
        except NotFound:
            if org is not None:
                raise
            raise NotFound(f"tool {tool!r} does not exist") from None  # not: which org has it
        await session.commit()  # the token's last use
    return access


async def _arguments(request: Request, gw: Gateway) -> dict[str, Any]:
    body = await request.body()
    if len(body) > gw.settings.max_body_bytes:
        raise TooLarge(f"the body is {len(body)} bytes, more than the limit of {gw.settings.max_body_bytes}")
    return arguments_object(body, what="the body")
