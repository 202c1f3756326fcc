"""Stored connections (``OAuthToken``): tokens encrypted and bound to their row and owner.

An owner is (template, org, user | None, shared name | None): a user's own connection,
the org's, or a named shared one. Reading and writing go through here so a plaintext
token never reaches a column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.oauth.contexts import token_context
from patchbay.oauth.grants import TokenSet
from patchbay.oauth.owner import Owner
from patchbay.security.crypto import Keyring
from patchbay.services.secrets import current_generation
from patchbay.store.models import OAuthClient, OAuthToken, new_id, utcnow

# Refresh this long before the provider's expiry, so a call never leaves with a token about to lapse.
REFRESH_MARGIN = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class Held:
    """One connection's tokens, decrypted (kept in memory only)."""

    row_id: str
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    scopes: tuple[str, ...]
    dead: bool
    issued_at: datetime | None = None

    def expiring(self) -> bool:
        """Whether the access token lapses within the refresh margin (a quarter of a short lifetime)."""
        if self.expires_at is None:
            return False
        margin = REFRESH_MARGIN
        if self.issued_at is not None:
            margin = min(margin, (self.expires_at - self.issued_at) / 4)
        return self.expires_at - margin <= utcnow()

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()


def _owned_by(owner: Owner) -> Any:
    return (
        (OAuthToken.template_id == owner.template_id)
        & (OAuthToken.org_id == owner.org_id)
        & (OAuthToken.user_id.is_(None) if owner.user_id is None else OAuthToken.user_id == owner.user_id)
        & (
            OAuthToken.shared_name.is_(None)
            if owner.shared_name is None
            else OAuthToken.shared_name == owner.shared_name
        )
    )


def context_of(row: OAuthToken) -> str:
    return token_context(row.id, row.template_id, row.org_id, row.user_id, row.shared_name)


def aware(moment: datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime."""
    # SQLite hands back naive datetimes; every one we store is UTC.
    return moment.replace(tzinfo=utcnow().tzinfo) if moment is not None and moment.tzinfo is None else moment


def open_row(row: OAuthToken, secret: bytes) -> Held:
    """Decrypt one stored connection."""
    value = Keyring(secret).decrypt_json(row.ciphertext, context=context_of(row))
    return Held(
        row_id=row.id,
        access_token=str(value["access_token"]),
        refresh_token=value.get("refresh_token"),
        expires_at=aware(row.expires_at),
        scopes=tuple(row.scopes or ()),
        dead=row.status == "dead",
        issued_at=aware(row.updated_at),
    )


async def find(session: AsyncSession, owner: Owner) -> OAuthToken | None:
    return await session.scalar(select(OAuthToken).where(_owned_by(owner)))


async def load(session: AsyncSession, owner: Owner, *, secret: bytes) -> Held | None:
    """The owner's tokens, or None when they never connected (or disconnected)."""
    row = await find(session, owner)
    return open_row(row, secret) if row is not None else None


async def save(
    session: AsyncSession, *, owner: Owner, client: OAuthClient, tokens: TokenSet, secret: bytes
) -> OAuthToken:
    """Store (or replace) the owner's tokens, encrypted under the current key generation."""
    ring = Keyring(secret, generation=await current_generation(session))
    row = await find(session, owner)
    if row is None:
        row = OAuthToken(
            id=new_id(),
            template_id=owner.template_id,
            org_id=owner.org_id,
            user_id=owner.user_id,
            shared_name=owner.shared_name,
            purpose=owner.purpose,
        )
    row.client_id = client.id
    row.ciphertext = ring.encrypt_json(
        {"access_token": tokens.access_token, "refresh_token": tokens.refresh_token}, context=context_of(row)
    )
    row.expires_at = tokens.expires_at
    row.scopes = list(tokens.scopes)
    row.status = "active"
    session.add(row)
    await session.flush()
    return row


async def mark_dead(session: AsyncSession, owner: Owner) -> None:
    """The provider refused the refresh token: keep the row (to show it) but never use it again."""
    row = await find(session, owner)
    if row is not None:
        row.status = "dead"
        await session.flush()


async def remove(session: AsyncSession, owner: Owner) -> None:
    await session.execute(delete(OAuthToken).where(_owned_by(owner)))
