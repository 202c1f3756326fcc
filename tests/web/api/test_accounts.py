"""People over REST: sign up, log in with a cookie and CSRF token, tokens for scripts, password changes."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.auth.sessions import CSRF_COOKIE, SESSION_COOKIE
from patchbay.auth.throttle import MAX_FAILURES
from patchbay.runtime import Gateway
from patchbay.security.passwords import hash_password_scrypt
from patchbay.settings import Settings
from patchbay.store.models import User
from tests.web.api.conftest import user_row
from tests.web.api.test_skeleton import assert_error

pytestmark = pytest.mark.anyio

PASSWORD = "violet hammer 42"


async def register_and_login(client: httpx.AsyncClient, email: str = "ada@example.com") -> dict[str, str]:
    created = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Ada"})
    assert created.status_code == 201, created.text
    login = await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"x-csrf-token": login.json()["csrf_token"]}


async def test_registration_creates_a_personal_org_owned_by_the_new_user(client: httpx.AsyncClient) -> None:
    await register_and_login(client)
    orgs = (await client.get("/api/v1/orgs")).json()["items"]
    assert [(o["personal"], o["role"]) for o in orgs] == [(True, "owner")]


async def test_weak_and_common_passwords_are_refused_with_a_clear_reason(client: httpx.AsyncClient) -> None:
    for password, words in [("short", "at least 8"), ("password123", "commonly used"), ("aaaaaaaaaaaa", "different")]:
        response = await client.post("/api/v1/auth/register", json={"email": "x@example.com", "password": password})
        assert_error(response, 422, "invalid_input")
        assert words in response.json()["error"]["message"]


async def test_login_sets_http_only_secure_cookie_and_the_session_works(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    login = await client.post("/api/v1/auth/login", json={"email": "ADA@example.com", "password": PASSWORD})
    cookies = login.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "Secure" in session_cookie and "SameSite=lax" in session_cookie
    csrf_cookie = next(c for c in cookies if c.startswith(CSRF_COOKIE + "="))
    assert "HttpOnly" not in csrf_cookie
    assert (await client.get("/api/v1/me")).json()["email"] == "ada@example.com"


async def test_wrong_password_and_unknown_email_get_the_same_answer(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    wrong = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "nope nope"})
    unknown = await client.post("/api/v1/auth/login", json={"email": "who@example.com", "password": "nope nope"})
    assert_error(wrong, 401, "unauthenticated")
    assert wrong.json() == unknown.json()


async def test_cookie_changes_without_the_csrf_token_are_refused(client: httpx.AsyncClient) -> None:
    csrf = await register_and_login(client)
    assert_error(await client.post("/api/v1/orgs", json={"name": "Team"}), 403, "forbidden")
    assert_error(
        await client.post("/api/v1/orgs", json={"name": "Team"}, headers={"x-csrf-token": "forged"}), 403, "forbidden"
    )
    assert (await client.post("/api/v1/orgs", json={"name": "Team"}, headers=csrf)).status_code == 201


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    csrf = await register_and_login(client)
    cookie = client.cookies[SESSION_COOKIE]
    assert (await client.post("/api/v1/auth/logout", headers=csrf)).status_code == 204
    client.cookies.set(SESSION_COOKIE, cookie)  # a copy kept by an attacker is dead too
    assert_error(await client.get("/api/v1/me"), 401, "unauthenticated")


async def test_password_change_ends_other_sessions_and_keeps_this_one(
    client: httpx.AsyncClient, settings: Settings, gateway: Gateway
) -> None:
    csrf = await register_and_login(client)
    old_cookie = client.cookies[SESSION_COOKIE]
    changed = await client.post(
        "/api/v1/auth/password",
        json={"current_password": PASSWORD, "new_password": "a whole new phrase"},
        headers=csrf,
    )
    assert changed.status_code == 200, changed.text
    assert (await client.get("/api/v1/me")).status_code == 200
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as other:
        other.cookies.set(SESSION_COOKIE, old_cookie)
        assert_error(await other.get("/api/v1/me"), 401, "unauthenticated")
    relogin = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert_error(relogin, 401, "unauthenticated")


async def test_old_scrypt_hash_logs_in_and_is_replaced_by_argon2id(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": "placeholder pw 1"})
    async with sessionmaker() as session:
        await session.execute(
            update(User).values(password_hash=hash_password_scrypt(PASSWORD, salt=b"0123456789abcdef"))
        )
        await session.commit()
    login = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert login.status_code == 200
    user = await user_row(sessionmaker, login.json()["user"]["id"])
    assert user.password_hash is not None and user.password_hash.startswith("$argon2id$")


async def test_repeated_failed_logins_are_throttled(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    for _ in range(MAX_FAILURES):
        await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": "guess guess"})
    blocked = await client.post("/api/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD})
    assert_error(blocked, 429, "rate_limited")


async def test_personal_access_token_is_shown_once_works_and_can_be_revoked(client: httpx.AsyncClient) -> None:
    csrf = await register_and_login(client)
    created = await client.post("/api/v1/me/tokens", json={"name": "laptop", "expires_in": "30d"}, headers=csrf)
    assert created.status_code == 201, created.text
    secret = created.json()["token"]
    listed = (await client.get("/api/v1/me/tokens")).json()["items"]
    assert [t["name"] for t in listed] == ["laptop"] and "token" not in listed[0]
    bearer = {"authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url)) as script:
        assert (await script.get("/api/v1/me", headers=bearer)).json()["email"] == "ada@example.com"
        # No CSRF needed with a token: no browser sends it on its own.
        assert (await script.post("/api/v1/orgs", json={"name": "Ops"}, headers=bearer)).status_code == 201
        revoked = await client.delete(f"/api/v1/me/tokens/{created.json()['id']}", headers=csrf)
        assert revoked.status_code == 204
        assert_error(await script.get("/api/v1/me", headers=bearer), 401, "unauthenticated")


async def test_closed_registration_is_refused(client: httpx.AsyncClient, gateway: Gateway) -> None:
    gateway.settings.registration_open = False
    response = await client.post("/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD})
    assert_error(response, 403, "forbidden")
