"""Personal access tokens: a user's credential for scripts and the remote CLI.

Like API keys, a token's secret exists only while ``create_token`` returns it; the
database keeps its prefix and an HMAC under the server secret.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.auth.keys import generate_key, hash_key, looks_like_key
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.keys import key_state
from patchbay.services.paging import Page, PageRequest, fetch_page
from patchbay.store.models import PersonalAccessToken, User, utcnow

TOKEN_PREFIX = "pbu_"
MAX_TOKEN_NAME = 200
_PREFIX_ATTEMPTS = 5


async def create_token(
    session: AsyncSession, *, user: User, name: str, expires_in: timedelta | None, secret: bytes
) -> tuple[PersonalAccessToken, str]:
    """A new token and its secret, which is not stored and cannot be shown again."""
    clean = name.strip()
    if len(clean) > MAX_TOKEN_NAME:
        raise InvalidInput(f"token name is longer than {MAX_TOKEN_NAME} characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise InvalidInput("a token must expire in the future")
    for _ in range(_PREFIX_ATTEMPTS):
        new = generate_key(secret, kind=TOKEN_PREFIX)
        taken = await session.scalar(select(PersonalAccessToken.id).where(PersonalAccessToken.prefix == new.prefix))
        if taken is None:
            break
    else:  # pragma: no cover - 48 bits of prefix
        raise Conflict("could not find a free token prefix; try again")
    token = PersonalAccessToken(
        user_id=user.id,
        name=clean,
        prefix=new.prefix,
        secret_hash=new.secret_hash,
        expires_at=utcnow() + expires_in if expires_in is not None else None,
    )
    session.add(token)
    await session.flush()
    return token, new.secret


async def list_tokens(session: AsyncSession, *, user_id: str, page: PageRequest) -> Page[PersonalAccessToken]:
    """The user's tokens (any state), oldest first; never secret material."""
    query = select(PersonalAccessToken).where(PersonalAccessToken.user_id == user_id)
    return await fetch_page(session, query, PersonalAccessToken.id, page)


async def revoke_token(session: AsyncSession, *, user_id: str, token_id: str) -> PersonalAccessToken:
    """Revoke one of the user's tokens; another user's token is not found."""
    token = await session.scalar(
        select(PersonalAccessToken).where(PersonalAccessToken.id == token_id, PersonalAccessToken.user_id == user_id)
    )
    if token is None:
        raise NotFound("no such token")
    if token.revoked_at is not None:
        raise Conflict(f"token {token.prefix} is already revoked")
    token.revoked_at = utcnow()
    await session.flush()
    return token


async def user_for_token(session: AsyncSession, *, presented: str, secret: bytes) -> User | None:
    """The active user a live token belongs to, or None (unknown, revoked, expired, deactivated)."""
    if not looks_like_key(presented, kind=TOKEN_PREFIX):
        return None
    row = await session.execute(
        select(PersonalAccessToken, User)
        .join(User, User.id == PersonalAccessToken.user_id)
        .where(PersonalAccessToken.secret_hash == hash_key(presented, secret))
    )
    found = row.first()
    if found is None:
        return None
    token, user = found
    if key_state(token) != "active" or not user.is_active:
        return None
    token.last_used_at = utcnow()
    return user
