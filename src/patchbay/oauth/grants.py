"""Token endpoint requests: the authorization code grant (PKCE verifier + resource), refresh, revocation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from patchbay.oauth.registration import ClientCredentials
from patchbay.oauth.wire import OAuthError, basic, post_form
from patchbay.store.models import utcnow


@dataclass(frozen=True)
class TokenSet:
    """What a token endpoint granted."""

    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...]


def _client_auth(creds: ClientCredentials, form: dict[str, str]) -> tuple[str, str] | None:
    """HTTP Basic for ``client_secret_basic``; otherwise the id (and secret) travel in the form."""
    if creds.secret and creds.auth_method == "client_secret_basic":
        return (creds.client_id, creds.secret)
    form["client_id"] = creds.client_id
    if creds.secret:
        form["client_secret"] = creds.secret
    return None


def _token_set(answer: dict[str, object], *, previous_refresh: str | None, asked: tuple[str, ...]) -> TokenSet:
    access = answer.get("access_token")
    if not isinstance(access, str) or not access:
        raise OAuthError("the token endpoint answered without an access_token")
    if str(answer.get("token_type", "bearer")).lower() != "bearer":
        raise OAuthError(f"the token endpoint issued a {answer.get('token_type')!r} token, not a bearer token")
    expires_in = answer.get("expires_in")
    expires_at = utcnow() + timedelta(seconds=float(expires_in)) if isinstance(expires_in, int | float) else None
    refresh = answer.get("refresh_token")
    scope = answer.get("scope")
    return TokenSet(
        access_token=access,
        # A server that does not rotate refresh tokens keeps the old one valid.
        refresh_token=refresh if isinstance(refresh, str) and refresh else previous_refresh,
        expires_at=expires_at,
        scopes=tuple(scope.split()) if isinstance(scope, str) else asked,
    )


async def exchange_code(
    http: httpx.AsyncClient,
    *,
    token_endpoint: str,
    creds: ClientCredentials,
    code: str,
    verifier: str,
    redirect_uri: str,
    resource: str,
    scopes: tuple[str, ...],
) -> TokenSet:
    """Trade an authorization code for tokens (PKCE verifier and RFC 8707 resource included)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        "redirect_uri": redirect_uri,
        "resource": resource,
    }
    auth = _client_auth(creds, form)
    answer = await post_form(http, token_endpoint, form, auth=auth)
    return _token_set(answer, previous_refresh=None, asked=scopes)


async def refresh(
    http: httpx.AsyncClient,
    *,
    token_endpoint: str,
    creds: ClientCredentials,
    refresh_token: str,
    resource: str,
    scopes: tuple[str, ...],
) -> TokenSet:
    """Use a refresh token; OAuthError with ``error == "invalid_grant"`` when the provider refuses it."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "resource": resource}
    auth = _client_auth(creds, form)
    answer = await post_form(http, token_endpoint, form, auth=auth)
    return _token_set(answer, previous_refresh=refresh_token, asked=scopes)


async def revoke(
    http: httpx.AsyncClient, *, revocation_endpoint: str, creds: ClientCredentials, token: str, hint: str
) -> None:
    """RFC 7009 revocation of one token (best effort: the caller forgets the token either way)."""
    form = {"token": token, "token_type_hint": hint}
    auth = _client_auth(creds, form)
    try:
        resp = await http.post(revocation_endpoint, data=form, auth=basic(auth))
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot reach {revocation_endpoint}: {exc}") from exc
    if resp.status_code >= 400:
        raise OAuthError(f"{revocation_endpoint} refused to revoke the token (HTTP {resp.status_code})")
