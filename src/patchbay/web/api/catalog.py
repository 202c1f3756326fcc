"""``/api/v1/catalog``: the global catalog, shared by every org; platform administrators curate it.

Entries are added with ``POST /orgs/{org}/upstreams`` and ``"scope": "global"``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from patchbay.policy.access import authorize_platform
from patchbay.services.catalog import update_template
from patchbay.services.paging import page_of
from patchbay.services.upstreams import get_upstream, list_upstreams, remove_upstream
from patchbay.web.api.deps import CurrentCaller, Db
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.upstreams import UpstreamOut, UpstreamPatch, upstream_out

router = APIRouter(prefix="/catalog", tags=["catalog"], responses=ERROR_RESPONSES)

EntryRef = Annotated[str, Path(min_length=1, max_length=200, description="Catalog entry slug or name.")]


@router.get("", summary="The global catalog (private entries only for platform administrators)")
async def list_(caller: CurrentCaller, session: Db, paging: Paging) -> PageOut[UpstreamOut]:
    found = await list_upstreams(session, org_id=None, include_private=caller.user.is_admin)
    return page_out(page_of(found, key=lambda s: s.template.id, request=paging), upstream_out)


@router.patch("/{entry}", summary="Change an entry's description, tags, icon or visibility (platform admins)")
async def update(entry: EntryRef, body: UpstreamPatch, caller: CurrentCaller, session: Db) -> UpstreamOut:
    authorize_platform(platform_admin=caller.user.is_admin, what="change the global catalog")
    template = await get_upstream(session, slug=entry, org_id=None)
    update_template(template, description=body.description, tags=body.tags, icon=body.icon, visibility=body.visibility)
    await session.flush()
    return upstream_out(next(s for s in await list_upstreams(session, org_id=None) if s.template.id == template.id))


@router.delete("/{entry}", status_code=204, summary="Remove an entry (platform admins)")
async def remove(
    entry: EntryRef,
    caller: CurrentCaller,
    session: Db,
    force: Annotated[bool, Query(description="Remove even while servers use it.")] = False,
) -> None:
    authorize_platform(platform_admin=caller.user.is_admin, what="change the global catalog")
    await remove_upstream(session, slug=entry, org_id=None, force=force)
