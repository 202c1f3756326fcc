"""What routes declare to get a database session, the caller, and their access to an org.

A route states its action once, ``access: Annotated[OrgAccess, Requires(Action.X)]``,
and receives an ``OrgAccess`` only if the policy allowed it. Cookie-authenticated
requests that change something must echo the session's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.auth.sessions import CSRF_HEADER, SESSION_COOKIE, LoginSession, LoginSessions
from patchbay.errors import Forbidden, Unauthenticated
from patchbay.policy.access import Action, OrgAccess, authorize
from patchbay.runtime import Gateway
from patchbay.services.orgs import membership_of
from patchbay.services.tokens import user_for_token
from patchbay.store.models import User

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def gateway(request: Request) -> Gateway:
    """The live gateway objects (database, shared store, secret)."""
    gw: Gateway = request.app.state.gateway
    return gw


def login_sessions(request: Request) -> LoginSessions:
    """Login sessions over the gateway's shared store."""
    found: LoginSessions = request.app.state.login_sessions
    return found


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    # Committed when the route returns, before the response leaves: a client never sees
    # a success for a change that then fails to commit.
    async with gateway(request).sessionmaker() as session:
        yield session
        await session.commit()


Db = Annotated[AsyncSession, Depends(_session, scope="function")]
Gw = Annotated[Gateway, Depends(gateway)]


@dataclass(frozen=True, slots=True)
class Caller:
    """The signed-in user and how they proved it (``session`` only for cookie logins)."""

    user: User
    method: str  # "session" or "token"
    session: LoginSession | None = None


def bearer_token(request: Request) -> str | None:
    """The credential of an `Authorization: Bearer` header, if any."""
    value = request.headers.get("authorization", "")
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" and credential.strip() else None


async def current_caller(request: Request, session: Db) -> Caller:
    """The caller, from a personal access token or a login cookie; 401 otherwise."""
    token = bearer_token(request)
    if token is not None:
        user = await user_for_token(session, presented=token, secret=gateway(request).secret)
        if user is None:
            await _auth_failed(request, method="token", detail="unknown, expired or revoked access token")
            raise Unauthenticated("the access token is unknown, expired or revoked")
        return Caller(user=user, method="token")
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        login = await login_sessions(request).get(cookie)
        user = await session.get(User, login.user_id) if login is not None else None
        if login is None or user is None or not user.is_active or login.epoch != user.session_epoch:
            await _auth_failed(request, method="session", detail="ended login session")
            raise Unauthenticated("the login session has ended; log in again")
        if request.method not in _SAFE_METHODS and not login.csrf_matches(request.headers.get(CSRF_HEADER)):
            raise Forbidden("missing or wrong X-CSRF-Token header for a cookie-authenticated change")
        return Caller(user=user, method="session", session=login)
    raise Unauthenticated("log in, or send a personal access token as 'Authorization: Bearer <token>'")


async def _auth_failed(request: Request, *, method: str, detail: str) -> None:
    """An ``auth.failed`` security event (never the credential itself), off the request's transaction."""
    event = security.security_event(
        event="auth.failed",
        channel="api",
        status="denied",
        http_status=401,
        auth_method=method,
        user_agent=request.headers.get("user-agent"),
        detail=detail,
    )
    await security.submit(gateway(request).audit, event)


CurrentCaller = Annotated[Caller, Depends(current_caller)]

OrgRef = Annotated[str, Path(description="Organization id or slug.", min_length=1, max_length=100)]


async def org_access(org: OrgRef, caller: CurrentCaller, session: Db) -> OrgAccess:
    """The caller's membership in the org of the path; 404 when they are not in it."""
    found = await membership_of(session, user_id=caller.user.id, org_ref=org)
    return OrgAccess(
        user_id=caller.user.id,
        org_id=found.org.id,
        org_slug=found.org.slug,
        role=found.role,
        platform_admin=caller.user.is_admin,
    )


def Requires(action: Action) -> Any:
    """A dependency granting ``OrgAccess`` only when the policy allows ``action``."""

    async def check(access: Annotated[OrgAccess, Depends(org_access)]) -> OrgAccess:
        authorize(access, action)
        return access

    return Depends(check)
