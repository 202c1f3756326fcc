"""Getting a client at an authorization server and keeping it per template (``OAuthClient``).

Preference: a pre-registered client an admin gave us; else a Client ID Metadata Document
(the URL of the document Patchbay serves is the client_id) when the server supports it;
else Dynamic Client Registration (RFC 7591).
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import InvalidInput
from patchbay.oauth.contexts import client_context
from patchbay.oauth.discovery import AuthorizationServer
from patchbay.oauth.urls import CLIENT_NAME, metadata_document_url, redirect_uri
from patchbay.oauth.wire import OAuthError, post_json
from patchbay.security.crypto import Keyring
from patchbay.services.secrets import current_generation
from patchbay.settings import Settings
from patchbay.store.models import OAuthClient, ServerTemplate


@dataclass(frozen=True)
class PreRegistered:
    """A client an administrator registered at the provider by hand."""

    client_id: str
    client_secret: str | None = None


@dataclass(frozen=True)
class ClientCredentials:
    """What token requests present: the client id, and the secret with its method when there is one."""

    client_id: str
    secret: str | None
    auth_method: str


async def _dynamic(http: httpx.AsyncClient, server: AuthorizationServer, settings: Settings) -> ClientCredentials:
    if not server.registration_endpoint:
        raise OAuthError(
            f"authorization server {server.issuer} supports neither client metadata documents nor dynamic "
            "registration: register a client there and add the upstream with its client id and secret"
        )
    method = "client_secret_basic" if "client_secret_basic" in server.auth_methods else "client_secret_post"
    body = {
        "client_name": CLIENT_NAME,
        "redirect_uris": [redirect_uri(settings)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": method,
    }
    if server.scopes:
        body["scope"] = " ".join(server.scopes)
    answer = await post_json(http, server.registration_endpoint, body)
    client_id = answer.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise OAuthError(f"dynamic registration at {server.issuer} returned no client_id")
    secret = answer.get("client_secret")
    granted = str(answer.get("token_endpoint_auth_method") or (method if secret else "none"))
    return ClientCredentials(client_id, secret if isinstance(secret, str) else None, granted)


async def register(
    session: AsyncSession,
    *,
    template: ServerTemplate,
    server: AuthorizationServer,
    settings: Settings,
    http: httpx.AsyncClient,
    secret: bytes,
    pre_registered: PreRegistered | None = None,
) -> OAuthClient:
    """Get a client for ``template`` at ``server`` and store it (replacing an earlier one)."""
    if pre_registered is not None:
        if not pre_registered.client_id.strip():
            raise InvalidInput("a pre-registered OAuth client needs a client id")
        has_secret = bool(pre_registered.client_secret)
        auth = "client_secret_basic" if "client_secret_basic" in server.auth_methods else "client_secret_post"
        creds = ClientCredentials(
            pre_registered.client_id, pre_registered.client_secret, auth if has_secret else "none"
        )
        how = "pre_registered"
    elif server.metadata_document_supported:
        creds, how = ClientCredentials(metadata_document_url(settings), None, "none"), "metadata_document"
    else:
        creds, how = await _dynamic(http, server, settings), "dynamic"
    ring = Keyring(secret, generation=await current_generation(session))
    row = await session.scalar(select(OAuthClient).where(OAuthClient.template_id == template.id))
    if row is None:
        row = OAuthClient(template_id=template.id)
    row.resource = server.resource
    row.issuer = server.issuer
    row.authorization_endpoint = server.authorization_endpoint
    row.token_endpoint = server.token_endpoint
    row.revocation_endpoint = server.revocation_endpoint
    row.client_id = creds.client_id
    row.secret_ciphertext = (
        ring.encrypt_json({"secret": creds.secret}, context=client_context(template.id)) if creds.secret else None
    )
    row.auth_method = creds.auth_method
    row.registration = how
    row.scopes = list(server.scopes)
    session.add(row)
    await session.flush()
    return row


def credentials(row: OAuthClient, secret: bytes) -> ClientCredentials:
    """The stored client, its secret decrypted (for a token request only)."""
    plain = None
    if row.secret_ciphertext:
        plain = str(
            Keyring(secret).decrypt_json(row.secret_ciphertext, context=client_context(row.template_id))["secret"]
        )
    return ClientCredentials(row.client_id, plain, row.auth_method)
