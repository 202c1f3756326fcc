"""OAuth connections to upstreams: ``/api/v1/orgs/{org}/connections`` and the provider's callback.

A connection is the caller's own by default: starting one sends their browser to the
provider, the provider sends it back to ``/api/v1/oauth/callback``, which must be reached as
the same signed-in user (login cookie or personal access token). An admin may instead connect
the org's token (``?credential=org``) or a named shared one (``?credential=shared:NAME``),
which keys bound to that credential call with. Tokens never appear in answers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from patchbay.audit import security
from patchbay.errors import PatchbayError
from patchbay.oauth import flow
from patchbay.oauth.connections import list_connections, remove_connection, sync_with_connection
from patchbay.oauth.owner import owner_for
from patchbay.oauth.urls import metadata_document
from patchbay.policy.access import Action, OrgAccess, authorize
from patchbay.policy.credentials import CredentialChoice
from patchbay.services.upstreams import get_upstream
from patchbay.web.api.deps import CurrentCaller, Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES, status_of

logger = logging.getLogger(__name__)

router = APIRouter(tags=["connections"], responses=ERROR_RESPONSES)

UpstreamRef = Annotated[str, Path(min_length=1, max_length=200, description="Upstream slug or name.")]
CredentialParam = Annotated[
    str,
    Query(
        max_length=80,
        description="Whose connection: own (default), org, or shared:NAME (admins; keys bound to it use it).",
    ),
]
RedirectAfter = Annotated[
    str | None, Query(max_length=500, description="A path on this gateway to send the browser to when connected.")
]


class ConnectionOut(BaseModel):
    upstream: str
    status: str = Field(description="connected, expired (reconnect), or pending (never connected).")
    scopes: list[str]
    expires_at: datetime | None = Field(description="When the current access token lapses (it is refreshed).")
    connected_at: datetime | None
    registration: str | None = Field(description="How the gateway is registered at the provider.")
    connect_url: str


class StartOut(BaseModel):
    authorization_url: str = Field(description="Open this in the browser of the user who started the connection.")
    expires_in: float


class ConnectedOut(BaseModel):
    upstream: str
    status: str
    scopes: list[str]


@router.get("/orgs/{org}/connections", summary="Your OAuth connections to the org's upstreams (never tokens)")
async def list_(
    access: Annotated[OrgAccess, Requires(Action.CONNECTIONS_OWN)], session: Db, gw: Gw
) -> list[ConnectionOut]:
    from patchbay.oauth.urls import connect_url

    return [
        ConnectionOut(
            upstream=c.upstream,
            status=c.status,
            scopes=c.scopes,
            expires_at=c.expires_at,
            connected_at=c.connected_at,
            registration=c.registration,
            connect_url=connect_url(gw.settings, org_slug=access.org_slug, upstream_slug=c.upstream),
        )
        for c in await list_connections(session, org_id=access.org_id, user_id=access.user_id)
    ]


def _credential(access: OrgAccess, text: str) -> CredentialChoice:
    """The parsed choice; connecting anything but one's own is for those who manage credentials."""
    choice = CredentialChoice.parse(text)
    if choice.source != "own":
        authorize(access, Action.CREDENTIALS_MANAGE)
    return choice


async def _start(
    access: OrgAccess, session: Db, gw: Gw, upstream: str, redirect_after: str | None, credential: str
) -> flow.Started:
    choice = _credential(access, credential)
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    return await flow.start(
        session,
        store=gw.store,
        settings=gw.settings,
        template=template,
        org_id=access.org_id,
        user_id=access.user_id,
        redirect_after=redirect_after,
        credential=choice,
    )


@router.get(
    "/orgs/{org}/connections/{upstream}/start",
    status_code=302,
    response_class=RedirectResponse,
    summary="Start connecting: redirects the browser to the provider",
)
async def start_redirect(
    upstream: UpstreamRef,
    access: Annotated[OrgAccess, Requires(Action.CONNECTIONS_OWN)],
    session: Db,
    gw: Gw,
    redirect_after: RedirectAfter = None,
    credential: CredentialParam = "own",
) -> RedirectResponse:
    started = await _start(access, session, gw, upstream, redirect_after, credential)
    return RedirectResponse(started.authorization_url, status_code=302)


@router.post("/orgs/{org}/connections/{upstream}/start", summary="Start connecting: the provider URL, for scripts")
async def start_json(
    upstream: UpstreamRef,
    access: Annotated[OrgAccess, Requires(Action.CONNECTIONS_OWN)],
    session: Db,
    gw: Gw,
    redirect_after: RedirectAfter = None,
    credential: CredentialParam = "own",
) -> StartOut:
    started = await _start(access, session, gw, upstream, redirect_after, credential)
    return StartOut(authorization_url=started.authorization_url, expires_in=started.expires_in)


@router.delete("/orgs/{org}/connections/{upstream}", status_code=204, summary="Disconnect (revokes at the provider)")
async def remove(
    upstream: UpstreamRef,
    access: Annotated[OrgAccess, Requires(Action.CONNECTIONS_OWN)],
    session: Db,
    gw: Gw,
    credential: CredentialParam = "own",
) -> None:
    choice = _credential(access, credential)
    template = await get_upstream(session, slug=upstream, org_id=access.org_id)
    owner = owner_for(template.id, access.org_id, access.user_id, choice)
    await remove_connection(session, template=template, owner=owner, secret=gw.secret, manager=gw.tokens)


@router.get("/oauth/callback", summary="Where the provider sends the browser back (same signed-in user)")
async def callback(
    caller: CurrentCaller,
    session: Db,
    gw: Gw,
    state: Annotated[str, Query(max_length=500)] = "",
    code: Annotated[str | None, Query(max_length=4000)] = None,
    error: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    try:
        done = await flow.complete(
            session,
            store=gw.store,
            settings=gw.settings,
            secret=gw.secret,
            state=state,
            code=code,
            error=error,
            user_id=caller.user.id,
        )
    except PatchbayError as exc:
        # The request's transaction is rolled back: the audit writer records the refusal on its own.
        event = security.security_event(
            event="oauth.callback_rejected",
            channel="api",
            status="denied",
            user_id=caller.user.id,
            http_status=status_of(exc),
            detail=str(exc)[:200],
        )
        await security.submit(gw.audit, event)
        raise
    await session.commit()
    gw.tokens.forget(done.owner)
    try:
        await sync_with_connection(
            session, template=done.template, owner=done.owner, manager=gw.tokens, secret=gw.secret
        )
        await session.commit()
    except PatchbayError as exc:
        # Connected all the same: the tools arrive with the next sync.
        await session.rollback()
        logger.warning("listing the tools of upstream %r after a connection failed: %s", done.template.slug, exc)
    if done.redirect_after:
        return RedirectResponse(done.redirect_after, status_code=302)
    out = ConnectedOut(upstream=done.template.slug, status="connected", scopes=list(done.scopes))
    return JSONResponse(out.model_dump())


@router.get("/oauth/client-metadata.json", summary="Patchbay's OAuth Client ID Metadata Document (public)")
async def client_metadata(gw: Gw) -> JSONResponse:
    return JSONResponse(metadata_document(gw.settings), headers={"cache-control": "public, max-age=300"})
