"""``/api/v1/auth``: register, log in (cookie + CSRF token), log out, change password."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from patchbay.audit import security
from patchbay.auth.sessions import CSRF_COOKIE, SESSION_COOKIE, LoginSession, LoginSessions
from patchbay.auth.throttle import LoginThrottle
from patchbay.errors import Forbidden, Unauthenticated
from patchbay.services import accounts
from patchbay.web.api.deps import CurrentCaller, Db, Gw, login_sessions
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.users import UserOut, user_out

router = APIRouter(prefix="/auth", tags=["auth"], responses=ERROR_RESPONSES)

Email = Annotated[str, Field(min_length=3, max_length=320)]
Password = Annotated[str, Field(min_length=1, max_length=1024)]


class RegisterIn(BaseModel):
    email: Email
    password: Password
    name: Annotated[str, Field(max_length=200)] = ""


class LoginIn(BaseModel):
    email: Email
    password: Password


class LoginOut(BaseModel):
    user: UserOut
    csrf_token: str = Field(description="Echo it in X-CSRF-Token on every change made with the cookie.")


class PasswordIn(BaseModel):
    current_password: Password
    new_password: Password


Sessions = Annotated[LoginSessions, Depends(login_sessions)]


def _set_cookies(response: Response, login: LoginSession, ttl: float) -> None:
    age = int(ttl)
    response.set_cookie(SESSION_COOKIE, login.session_id, max_age=age, httponly=True, secure=True, samesite="lax")
    # Readable by the console's script, which echoes it in X-CSRF-Token (double submit).
    response.set_cookie(CSRF_COOKIE, login.csrf_token, max_age=age, httponly=False, secure=True, samesite="strict")


@router.post("/register", status_code=201, summary="Create an account (with a personal organization)")
async def register(body: RegisterIn, session: Db, gw: Gw) -> UserOut:
    if not gw.settings.registration_open:
        raise Forbidden("registration is closed on this gateway; ask an administrator for an account")
    user = await accounts.register(session, email=body.email, password=body.password, name=body.name)
    return user_out(user)


@router.post("/login", summary="Log in with email and password; sets the session cookie")
async def login(
    body: LoginIn, request: Request, response: Response, session: Db, gw: Gw, sessions: Sessions
) -> LoginOut:
    throttle = LoginThrottle(gw.store)
    agent = request.headers.get("user-agent")
    await throttle.check(body.email)
    try:
        user = await accounts.authenticate(session, email=body.email, password=body.password)
    except Unauthenticated:
        await throttle.failed(body.email)
        # The change is rolled back with the error, so the event goes to the audit writer.
        who = await accounts.user_id_for_email(session, email=body.email)
        event = security.security_event(
            event="login.failed",
            channel="api",
            status="denied",
            http_status=401,
            user_id=who,
            auth_method="password",
            user_agent=agent,
            detail=None if who else "no active account with that email",
        )
        await security.submit(gw.audit, event)
        raise
    await throttle.succeeded(body.email)
    security.record(
        session,
        security.security_event(
            event="login", channel="api", user_id=user.id, auth_method="password", user_agent=agent
        ),
    )
    started = await sessions.create(user_id=user.id, epoch=user.session_epoch)
    _set_cookies(response, started, sessions.ttl)
    return LoginOut(user=user_out(user), csrf_token=started.csrf_token)


@router.post("/logout", status_code=204, summary="End the login session of this cookie")
async def logout(response: Response, caller: CurrentCaller, sessions: Sessions) -> None:
    if caller.session is not None:
        await sessions.end(caller.session.session_id)
    response.delete_cookie(SESSION_COOKIE, httponly=True, secure=True, samesite="lax")
    response.delete_cookie(CSRF_COOKIE, secure=True, samesite="strict")


@router.post("/password", summary="Change the password; every login session ends, this one is renewed")
async def change_password(
    body: PasswordIn, response: Response, caller: CurrentCaller, session: Db, sessions: Sessions
) -> LoginOut:
    user = await accounts.change_password(
        session, user=caller.user, current=body.current_password, new=body.new_password
    )
    if caller.session is not None:
        await sessions.end(caller.session.session_id)
    started = await sessions.create(user_id=user.id, epoch=user.session_epoch)
    _set_cookies(response, started, sessions.ttl)
    return LoginOut(user=user_out(user), csrf_token=started.csrf_token)
