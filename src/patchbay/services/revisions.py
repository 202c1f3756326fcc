"""Revision counters: a gateway caches a server's catalog and a key's grants per revision.

Bumps are atomic in SQL (``revision = revision + 1``) so concurrent changes never
lose one, and the new value is written back into rows already in the session, so
callers can read ``server.revision`` without a lazy load.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from patchbay.store.changes import announce_change
from patchbay.store.models import ApiKey, Server, utcnow


async def bump_servers(session: AsyncSession, where: ColumnElement[bool]) -> list[str]:
    """Bump every matching server; returns their ids."""
    return await _bump(session, Server, where)


async def bump_server(session: AsyncSession, server: Server) -> None:
    """Bump one server (its catalog changed)."""
    await _bump(session, Server, Server.id == server.id)


async def bump_key(session: AsyncSession, key: ApiKey) -> None:
    """Bump one key (its grants or validity changed)."""
    await _bump(session, ApiKey, ApiKey.id == key.id)


async def _bump(session: AsyncSession, model: type[Server] | type[ApiKey], where: ColumnElement[bool]) -> list[str]:
    await session.flush()
    now = utcnow()
    rows = (
        await session.execute(
            update(model)
            .where(where)
            .values(revision=model.revision + 1, updated_at=now)
            .returning(model.id, model.revision)
            .execution_options(synchronize_session=False)
        )
    ).all()
    if rows:
        await announce_change(session)
    ids: list[str] = []
    for row_id, revision in rows:
        ids.append(row_id)
        instance: Any = session.identity_map.get(identity_key(model, row_id))
        if instance is not None:
            set_committed_value(instance, "revision", revision)
            set_committed_value(instance, "updated_at", now)
    return ids
