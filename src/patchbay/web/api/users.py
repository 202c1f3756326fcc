"""``/api/v1/users``: accounts as a platform administrator manages them (``patchbay user create``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, Field
from sqlalchemy import select

from patchbay.policy.access import authorize_platform
from patchbay.services.paging import fetch_page
from patchbay.services.users import create_user
from patchbay.store.models import User
from patchbay.web.api.deps import CurrentCaller, Db
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/users", tags=["users"], responses=ERROR_RESPONSES)


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    platform_admin: bool
    active: bool
    created_at: Timestamp


class UserIn(BaseModel):
    email: Annotated[str, Field(min_length=3, max_length=320)]
    password: Annotated[str | None, Field(max_length=1024)] = None
    name: Annotated[str, Field(max_length=200)] = ""
    platform_admin: bool = False


def user_out(user: User) -> UserOut:
    """A user as the API shows it: never the password hash."""
    return UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        platform_admin=user.is_admin,
        active=user.is_active,
        created_at=user.created_at,
    )


@router.get("", summary="Every account (platform administrators only)")
async def list_users(caller: CurrentCaller, session: Db, paging: Paging) -> PageOut[UserOut]:
    authorize_platform(platform_admin=caller.user.is_admin, what="list every account")
    return page_out(await fetch_page(session, select(User), User.id, paging), user_out)


@router.post("", status_code=201, summary="Create an account (platform administrators only)")
async def create(body: UserIn, caller: CurrentCaller, session: Db) -> UserOut:
    authorize_platform(platform_admin=caller.user.is_admin, what="create accounts")
    user = await create_user(
        session, email=body.email, password=body.password, admin=body.platform_admin, name=body.name
    )
    return user_out(user)
