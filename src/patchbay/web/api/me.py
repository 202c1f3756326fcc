"""``/api/v1/me``: the signed-in user, and their personal access tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from patchbay.services.durations import parse_duration
from patchbay.services.keys import key_state
from patchbay.services.paging import ID_PATTERN
from patchbay.services.tokens import create_token, list_tokens, revoke_token
from patchbay.store.models import PersonalAccessToken
from patchbay.web.api.deps import CurrentCaller, Db, Gw
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp
from patchbay.web.api.users import UserOut, user_out

router = APIRouter(prefix="/me", tags=["me"], responses=ERROR_RESPONSES)


class TokenIn(BaseModel):
    name: Annotated[str, Field(max_length=200)] = ""
    expires_in: Annotated[str | None, Field(max_length=20, description="e.g. 30d, 12h; none: never")] = None


class TokenOut(BaseModel):
    id: str
    name: str
    prefix: str
    state: str
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None


class TokenCreated(TokenOut):
    token: str = Field(description="The secret: shown this once, never again.")


def token_out(token: PersonalAccessToken) -> TokenOut:
    """A token's metadata; never its secret or hash."""
    return TokenOut(
        id=token.id,
        name=token.name,
        prefix=token.prefix,
        state=key_state(token),
        created_at=token.created_at,
        expires_at=token.expires_at,
        revoked_at=token.revoked_at,
        last_used_at=token.last_used_at,
    )


@router.get("", summary="The signed-in user")
async def me(caller: CurrentCaller) -> UserOut:
    return user_out(caller.user)


@router.get("/tokens", summary="Your personal access tokens")
async def tokens(caller: CurrentCaller, session: Db, paging: Paging) -> PageOut[TokenOut]:
    return page_out(await list_tokens(session, user_id=caller.user.id, page=paging), token_out)


@router.post("/tokens", status_code=201, summary="Create a personal access token (its secret is shown once)")
async def create(body: TokenIn, caller: CurrentCaller, session: Db, gw: Gw) -> TokenCreated:
    expires = parse_duration(body.expires_in) if body.expires_in else None
    token, secret = await create_token(session, user=caller.user, name=body.name, expires_in=expires, secret=gw.secret)
    return TokenCreated(**token_out(token).model_dump(), token=secret)


@router.delete("/tokens/{token_id}", status_code=204, summary="Revoke one of your tokens")
async def revoke(token_id: Annotated[str, Path(pattern=ID_PATTERN)], caller: CurrentCaller, session: Db) -> None:
    await revoke_token(session, user_id=caller.user.id, token_id=token_id)
