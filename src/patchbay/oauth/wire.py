"""The HTTP exchanges with authorization servers and resource metadata: small JSON over httpx."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from patchbay.errors import UpstreamError

TIMEOUT = 15.0


class OAuthError(UpstreamError):
    """An authorization server or a resource's metadata refused us or answered something unusable."""

    code = "oauth_error"

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.error = error  # the OAuth "error" code (invalid_grant, ...), when the server sent one
        self.status = status


def client() -> httpx.AsyncClient:
    """A short-lived client for metadata and token requests (redirects are never followed)."""
    return httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False)


async def get_json(http: httpx.AsyncClient, url: str) -> dict[str, Any] | None:
    """The JSON object at ``url``, or None when it is not there (4xx) or not a JSON object."""
    try:
        resp = await http.get(url, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot fetch {url}: {exc}") from exc
    if resp.status_code != 200:
        return None
    try:
        body = resp.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def basic(pair: tuple[str, str] | None) -> httpx.Auth | httpx._client.UseClientDefault:
    """HTTP Basic client authentication, or none."""
    return httpx.BasicAuth(*pair) if pair is not None else httpx.USE_CLIENT_DEFAULT


async def post_form(
    http: httpx.AsyncClient, url: str, form: Mapping[str, str], *, auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    """POST a form to a token-style endpoint; the JSON answer, or OAuthError with the server's error code."""
    try:
        resp = await http.post(url, data=dict(form), auth=basic(auth), headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot reach {url}: {exc}") from exc
    return _answer(url, resp)


async def post_json(http: httpx.AsyncClient, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """POST a JSON object (dynamic client registration); the JSON answer or OAuthError."""
    try:
        resp = await http.post(url, json=dict(body), headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot reach {url}: {exc}") from exc
    return _answer(url, resp)


def _answer(url: str, resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if resp.status_code >= 400 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        # Only the error code and its description: never echo a body that may hold credentials.
        described = body.get("error_description") if isinstance(body, dict) else None
        reason = f"{error}: {described}" if described else str(error or f"HTTP {resp.status_code}")
        raise OAuthError(
            f"{url} refused the request ({reason})",
            error=str(error) if error else None,
            status=resp.status_code,
        )
    return body
