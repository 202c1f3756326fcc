"""A real OAuth 2.1 authorization server for tests, served over loopback HTTP.

RFC 8414 metadata, Dynamic Client Registration (RFC 7591), Client ID Metadata Documents
(fetched from the client_id URL), an authorization endpoint that consents on its own for
the configured user (redirecting straight back with a code), a token endpoint checking
PKCE S256, redirect URI and the RFC 8707 resource, rotating refresh tokens, introspection
(RFC 7662, for the resource server) and revocation (RFC 7009). Tests read its counters and
can revoke a refresh token or shorten access-token lifetimes.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route


@dataclass
class Grant:
    client_id: str
    subject: str
    scopes: tuple[str, ...]
    resource: str
    expires_at: float = 0.0


@dataclass
class Provider:
    """State and behaviour of the authorization server; ``app`` serves it."""

    issuer: str = ""
    subject: str = "alice@provider"  # whom the auto-consent authorizes
    access_ttl: float = 3600.0
    cimd: bool = True
    dcr: bool = True
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    codes: dict[str, tuple[Grant, str, str]] = field(default_factory=dict)  # code -> grant, challenge, redirect
    access: dict[str, Grant] = field(default_factory=dict)
    refresh: dict[str, Grant] = field(default_factory=dict)
    refreshes: int = 0
    token_requests: list[dict[str, str]] = field(default_factory=list)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every access and refresh token ever handed out

    # -- test controls ------------------------------------------------------------------

    def revoke_refresh_tokens(self) -> None:
        self.refresh.clear()

    def expire_access_tokens(self) -> None:
        for grant in self.access.values():
            grant.expires_at = 0.0

    # -- endpoints ----------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "introspection_endpoint": f"{self.issuer}/introspect",
            "revocation_endpoint": f"{self.issuer}/revoke",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "client_id_metadata_document_supported": self.cimd,
        }
        if self.dcr:
            meta["registration_endpoint"] = f"{self.issuer}/register"
        return meta

    async def _metadata(self, request: Request) -> Response:
        return JSONResponse(self.metadata())

    async def _register(self, request: Request) -> Response:
        body = await request.json()
        client_id = "dcr-" + secrets.token_hex(8)
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        client = {"client_id": client_id, "redirect_uris": body["redirect_uris"], "token_endpoint_auth_method": method}
        if method != "none":
            client["client_secret"] = secrets.token_urlsafe(24)
        self.clients[client_id] = client
        return JSONResponse(client, status_code=201)

    def add_client(self, client_id: str, secret: str, redirect_uri: str) -> None:
        """A pre-registered confidential client."""
        self.clients[client_id] = {
            "client_id": client_id,
            "client_secret": secret,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "client_secret_basic",
        }

    async def _client(self, client_id: str) -> dict[str, Any] | None:
        if client_id in self.clients:
            return self.clients[client_id]
        if self.cimd and client_id.startswith(("http://", "https://")):
            async with httpx.AsyncClient() as http:
                resp = await http.get(client_id)
            if resp.status_code != 200:
                return None
            doc = resp.json()
            if doc.get("client_id") != client_id:  # the document must name its own URL
                return None
            self.clients[client_id] = {**doc, "fetched": True}
            return self.clients[client_id]
        return None

    async def _authorize(self, request: Request) -> Response:
        q = dict(request.query_params)
        self.authorize_requests.append(q)
        client = await self._client(q.get("client_id", ""))
        if client is None or q.get("redirect_uri") not in client["redirect_uris"]:
            return JSONResponse({"error": "invalid_client"}, status_code=400)
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or not q.get("code_challenge"):
            return JSONResponse({"error": "invalid_request", "error_description": "PKCE S256 required"}, 400)
        if not q.get("resource"):
            return JSONResponse({"error": "invalid_target", "error_description": "resource required"}, 400)
        code = secrets.token_urlsafe(16)
        grant = Grant(client["client_id"], self.subject, tuple(q.get("scope", "").split()), q["resource"])
        self.codes[code] = (grant, q["code_challenge"], q["redirect_uri"])
        # Auto-consent: straight back to the client with the code.
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q.get('state', '')})}", 302)

    def _authenticate(self, request: Request, form: dict[str, str]) -> dict[str, Any] | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            raw = base64.b64decode(header[6:]).decode()
            cid, _, secret = raw.partition(":")
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        client = self.clients.get(cid)
        if client is None:
            return None
        expected = client.get("client_secret")
        if expected is not None and not secrets.compare_digest(expected, secret):
            return None
        return client

    def _issue(self, grant: Grant) -> dict[str, Any]:
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self.access[access] = Grant(
            grant.client_id, grant.subject, grant.scopes, grant.resource, time.time() + self.access_ttl
        )
        self.refresh[refresh] = grant
        self.issued += [access, refresh]
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "refresh_token": refresh,
            "scope": " ".join(grant.scopes),
        }

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        self.token_requests.append(form)
        client = self._authenticate(request, form)
        if client is None:
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        if form.get("grant_type") == "authorization_code":
            found = self.codes.pop(form.get("code", ""), None)
            if found is None:
                return JSONResponse({"error": "invalid_grant", "error_description": "unknown code"}, 400)
            grant, challenge, redirect = found
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if digest != challenge:
                return JSONResponse({"error": "invalid_grant", "error_description": "PKCE verification failed"}, 400)
            if form.get("redirect_uri") != redirect or grant.client_id != client["client_id"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "redirect/client mismatch"}, 400)
            if form.get("resource") != grant.resource:
                return JSONResponse({"error": "invalid_target"}, 400)
            return JSONResponse(self._issue(grant))
        if form.get("grant_type") == "refresh_token":
            grant = self.refresh.pop(form.get("refresh_token", ""), None)  # rotated: single use
            if grant is None or grant.client_id != client["client_id"]:
                return JSONResponse({"error": "invalid_grant", "error_description": "refresh token revoked"}, 400)
            if form.get("resource") != grant.resource:
                return JSONResponse({"error": "invalid_target"}, 400)
            self.refreshes += 1
            return JSONResponse(self._issue(grant))
        return JSONResponse({"error": "unsupported_grant_type"}, 400)

    async def _introspect(self, request: Request) -> Response:
        form = await request.form()
        grant = self.access.get(str(form.get("token", "")))
        if grant is None or grant.expires_at <= time.time():
            return JSONResponse({"active": False})
        return JSONResponse(
            {
                "active": True,
                "sub": grant.subject,
                "aud": grant.resource,
                "scope": " ".join(grant.scopes),
                "client_id": grant.client_id,
            }
        )

    async def _revoke(self, request: Request) -> Response:
        form = await request.form()
        token = str(form.get("token", ""))
        self.revoked.append(token)
        self.access.pop(token, None)
        self.refresh.pop(token, None)
        return Response(status_code=200)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/oauth-authorization-server", self._metadata),
                Route("/register", self._register, methods=["POST"]),
                Route("/authorize", self._authorize),
                Route("/token", self._token, methods=["POST"]),
                Route("/introspect", self._introspect, methods=["POST"]),
                Route("/revoke", self._revoke, methods=["POST"]),
            ]
        )
