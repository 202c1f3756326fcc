"""The authorization-code flow with PKCE (S256) and RFC 8707 ``resource``.

Flow state lives in the shared store under a hash of ``state`` with a short TTL (no
table): the PKCE verifier, who started the flow, in which org, for which upstream, and
where to send the browser afterwards. The callback honours a state only once, only
before it expires, and only for the user who started it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.audit import security
from patchbay.errors import Forbidden, InvalidInput, NotFound
from patchbay.oauth import grants, tokens
from patchbay.oauth.owner import Owner, owner_for
from patchbay.oauth.registration import credentials
from patchbay.oauth.urls import redirect_uri
from patchbay.oauth.wire import client
from patchbay.policy.credentials import OWN, CredentialChoice
from patchbay.services.credentials import ensure_shared_credential
from patchbay.settings import Settings
from patchbay.state.base import SharedStore
from patchbay.store.models import OAuthClient, ServerTemplate


@dataclass(frozen=True)
class Started:
    authorization_url: str
    expires_in: float


@dataclass(frozen=True)
class Completed:
    owner: Owner
    template: ServerTemplate
    scopes: tuple[str, ...]
    redirect_after: str | None


def _flow_key(state: str) -> str:
    return "oauth:flow:" + hashlib.sha256(state.encode()).hexdigest()


def _used_key(state: str) -> str:
    return "oauth:flow-used:" + hashlib.sha256(state.encode()).hexdigest()


def pkce_pair() -> tuple[str, str]:
    """A fresh code verifier (86 characters) and its S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _safe_redirect(target: str | None, settings: Settings) -> str | None:
    """Only a path on this gateway: the callback must not become an open redirect."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        raise InvalidInput("redirect_after must be a path on this gateway, such as /servers")
    return target


async def oauth_client_of(session: AsyncSession, template: ServerTemplate) -> OAuthClient:
    if template.auth_kind != "oauth":
        raise InvalidInput(f"upstream {template.slug!r} does not use OAuth")
    row = await session.scalar(select(OAuthClient).where(OAuthClient.template_id == template.id))
    if row is None:
        raise NotFound(f"upstream {template.slug!r} has no OAuth client yet: an admin must re-add or refresh it")
    return row


async def start(
    session: AsyncSession,
    *,
    store: SharedStore,
    settings: Settings,
    template: ServerTemplate,
    org_id: str,
    user_id: str,
    redirect_after: str | None = None,
    credential: CredentialChoice = OWN,
) -> Started:
    """Remember a new flow for ``user_id`` and return the provider URL their browser must open.

    ``credential`` says whose connection the tokens become: ``own`` (the user's), ``org`` or
    ``shared:NAME`` (used by keys bound to it; the caller checks the user may manage those).
    """
    oauth_client = await oauth_client_of(session, template)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    ttl = settings.oauth_state_ttl_seconds
    flow = {
        "verifier": verifier,
        "user_id": user_id,
        "org_id": org_id,
        "template_id": template.id,
        "credential": credential.label,
        "redirect_after": _safe_redirect(redirect_after, settings),
        "expires_at": time.time() + ttl,
    }
    await store.set(_flow_key(state), orjson.dumps(flow), ttl=ttl)
    query = {
        "response_type": "code",
        "client_id": oauth_client.client_id,
        "redirect_uri": redirect_uri(settings),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "resource": oauth_client.resource,
    }
    if oauth_client.scopes:
        query["scope"] = " ".join(oauth_client.scopes)
    separator = "&" if "?" in oauth_client.authorization_endpoint else "?"
    return Started(oauth_client.authorization_endpoint + separator + urlencode(query), ttl)


async def complete(
    session: AsyncSession,
    *,
    store: SharedStore,
    settings: Settings,
    secret: bytes,
    state: str,
    code: str | None,
    error: str | None,
    user_id: str,
) -> Completed:
    """Check the callback's state against the flow it names, then trade the code for tokens."""
    raw = await store.get(_flow_key(state)) if state else None
    if raw is None:
        if state and await store.get(_used_key(state)) is not None:
            raise Forbidden("this authorization was already completed: start the connection again")
        raise Forbidden("unknown or expired OAuth state: start the connection again")
    flow = orjson.loads(raw)
    if float(flow["expires_at"]) <= time.time():
        await store.delete(_flow_key(state))
        raise Forbidden("unknown or expired OAuth state: start the connection again")
    if flow["user_id"] != user_id:
        # Not consumed: someone else presenting it must not burn the real user's flow.
        raise Forbidden("this authorization was started by another user")
    if not await store.set_if_absent(_used_key(state), b"1", ttl=settings.oauth_state_ttl_seconds):
        raise Forbidden("this authorization was already completed: start the connection again")
    await store.delete(_flow_key(state))
    template = await session.get(ServerTemplate, flow["template_id"])
    if template is None:
        raise NotFound("the upstream of this authorization no longer exists")
    owner = owner_for(template.id, flow["org_id"], user_id, CredentialChoice.parse(flow.get("credential", "own")))
    if error or not code:
        raise InvalidInput(f"the provider did not authorize the connection ({error or 'no code returned'})")
    oauth_client = await oauth_client_of(session, template)
    async with client() as http:
        granted = await grants.exchange_code(
            http,
            token_endpoint=oauth_client.token_endpoint,
            creds=credentials(oauth_client, secret),
            code=code,
            verifier=flow["verifier"],
            redirect_uri=redirect_uri(settings),
            resource=oauth_client.resource,
            scopes=tuple(oauth_client.scopes or ()),
        )
    await tokens.save(session, owner=owner, client=oauth_client, tokens=granted, secret=secret)
    if owner.shared_name is not None:
        await ensure_shared_credential(
            session, org_id=owner.org_id, template=template, name=owner.shared_name, secret=secret
        )
    security.record(
        session,
        security.security_event(
            event="oauth.connected", channel="api", org_id=owner.org_id, user_id=user_id, detail=template.slug
        ),
    )
    return Completed(owner=owner, template=template, scopes=granted.scopes, redirect_after=flow["redirect_after"])
