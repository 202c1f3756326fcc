"""Where an upstream's tokens come from: its 401 → Protected Resource Metadata (RFC 9728) →
authorization server metadata (RFC 8414, then OpenID Connect discovery), in the order the
MCP authorization spec (2025-11-25) gives."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from patchbay.oauth.wire import OAuthError, client, get_json

_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_PROBE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "patchbay", "version": "0.1.0"},
    },
}


@dataclass(frozen=True)
class Challenge:
    """What an upstream's ``WWW-Authenticate: Bearer`` challenge said."""

    resource_metadata: str | None = None
    scope: str | None = None


@dataclass(frozen=True)
class AuthorizationServer:
    """What the gateway needs to know to get tokens for one upstream."""

    resource: str  # canonical resource URI, sent as RFC 8707 ``resource``
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    registration_endpoint: str | None = None
    revocation_endpoint: str | None = None
    metadata_document_supported: bool = False
    auth_methods: tuple[str, ...] = ("client_secret_basic",)
    scopes: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


def parse_challenge(header: str) -> Challenge | None:
    """The Bearer challenge's parameters, or None when the header has no Bearer challenge."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    params = {m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3) for m in _PARAM.finditer(rest)}
    return Challenge(resource_metadata=params.get("resource_metadata"), scope=params.get("scope"))


def canonical_resource(url: str) -> str:
    """The upstream's URL as a resource indicator: lower-case scheme and host, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path, parts.query, ""))


def _well_known(url: str, name: str, *, suffix_path: bool = True) -> str:
    parts = urlsplit(url)
    path = parts.path.rstrip("/")
    where = f"/.well-known/{name}{path}" if suffix_path else f"{path}/.well-known/{name}"
    return urlunsplit((parts.scheme, parts.netloc, where, "", ""))


def resource_metadata_urls(resource_url: str, challenge: Challenge | None) -> list[str]:
    """Where to look for Protected Resource Metadata: the challenge's link, then the well-known paths."""
    urls = [challenge.resource_metadata] if challenge is not None and challenge.resource_metadata else []
    urls.append(_well_known(resource_url, "oauth-protected-resource"))
    root = _well_known(urlunsplit((*urlsplit(resource_url)[:2], "", "", "")), "oauth-protected-resource")
    if root not in urls:
        urls.append(root)
    return urls


def authorization_metadata_urls(issuer: str) -> list[str]:
    """RFC 8414 then OpenID discovery URLs for an issuer, path-aware as the MCP spec orders them."""
    if urlsplit(issuer).path.strip("/"):
        return [
            _well_known(issuer, "oauth-authorization-server"),
            _well_known(issuer, "openid-configuration"),
            _well_known(issuer, "openid-configuration", suffix_path=False),
        ]
    return [_well_known(issuer, "oauth-authorization-server"), _well_known(issuer, "openid-configuration")]


async def probe(http: httpx.AsyncClient, url: str) -> Challenge | None:
    """Call the upstream without a token; its Bearer challenge if it answers 401, else None."""
    try:
        resp = await http.post(
            url,
            json=_PROBE,
            headers={"accept": "application/json, text/event-stream", "mcp-protocol-version": "2025-11-25"},
        )
    except httpx.HTTPError as exc:
        raise OAuthError(f"cannot reach upstream {url}: {exc}") from exc
    if resp.status_code != 401:
        return None
    return parse_challenge(resp.headers.get("www-authenticate", "")) or Challenge()


async def discover(url: str, *, http: httpx.AsyncClient | None = None) -> AuthorizationServer:
    """Discover the authorization server that issues tokens for the upstream at ``url``."""
    if http is None:
        async with client() as own:
            return await discover(url, http=own)
    challenge = await probe(http, url)
    resource = canonical_resource(url)
    prm: dict[str, Any] | None = None
    for candidate in resource_metadata_urls(url, challenge):
        prm = await get_json(http, candidate)
        if prm is not None:
            break
    if prm is None:
        raise OAuthError(f"upstream {url} publishes no OAuth protected resource metadata")
    servers = prm.get("authorization_servers")
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], str):
        raise OAuthError(f"the protected resource metadata of {url} names no authorization server")
    named = prm.get("resource")
    # RFC 9728 §3.3: metadata for another resource must not be used for this one.
    if isinstance(named, str) and canonical_resource(named).rstrip("/") not in (
        resource.rstrip("/"),
        canonical_resource(urlunsplit((*urlsplit(url)[:2], "", "", ""))).rstrip("/"),
    ):
        raise OAuthError(f"the protected resource metadata of {url} describes another resource ({named})")
    if isinstance(named, str):
        resource = canonical_resource(named)
    issuer = servers[0]
    meta: dict[str, Any] | None = None
    for candidate in authorization_metadata_urls(issuer):
        meta = await get_json(http, candidate)
        if meta is not None:
            break
    if meta is None:
        raise OAuthError(f"authorization server {issuer} publishes no metadata (RFC 8414 / OpenID)")
    if str(meta.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise OAuthError(f"authorization server metadata names issuer {meta.get('issuer')!r}, not {issuer!r}")
    if "S256" not in (meta.get("code_challenge_methods_supported") or []):
        raise OAuthError(f"authorization server {issuer} does not advertise PKCE S256; refusing to use it")
    for needed in ("authorization_endpoint", "token_endpoint"):
        if not isinstance(meta.get(needed), str):
            raise OAuthError(f"authorization server {issuer} metadata has no {needed}")
    scopes = challenge.scope.split() if challenge is not None and challenge.scope else prm.get("scopes_supported")
    return AuthorizationServer(
        resource=resource,
        issuer=issuer,
        authorization_endpoint=meta["authorization_endpoint"],
        token_endpoint=meta["token_endpoint"],
        registration_endpoint=meta.get("registration_endpoint"),
        revocation_endpoint=meta.get("revocation_endpoint"),
        metadata_document_supported=meta.get("client_id_metadata_document_supported") is True,
        auth_methods=tuple(meta.get("token_endpoint_auth_methods_supported") or ("client_secret_basic",)),
        scopes=tuple(s for s in scopes or () if isinstance(s, str)),
    )
