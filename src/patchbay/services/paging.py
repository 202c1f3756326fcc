"""Cursor pagination over time-ordered ids (``store.models.new_id``).

A page is the next ``limit`` items after the cursor, in id (= creation) order; the
cursor is the last id handed out, so pages never repeat or skip an item while rows
are added. SQL queries page in the database; lists that a service has to build row
by row (with counts or exposed names) page in memory with the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from patchbay.errors import InvalidInput

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
ID_PATTERN = r"^[0-9a-f]{32}$"  # every id (store.models.new_id)
CURSOR_PATTERN = ID_PATTERN
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Up to ``limit`` items with an id greater than ``after`` (None: from the start)."""

    limit: int = DEFAULT_LIMIT
    after: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}")
        if self.after is not None and _CURSOR.fullmatch(self.after) is None:
            raise InvalidInput("cursor is not one this API handed out")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Items of one page; ``next_cursor`` is None on the last page."""

    items: list[T]
    next_cursor: str | None


async def fetch_page(
    session: AsyncSession, query: Select[T], id_column: InstrumentedAttribute[str], request: PageRequest
) -> Page[T]:
    """One page of a single-entity query, ordered by ``id_column``."""
    if request.after is not None:
        query = query.where(id_column > request.after)
    rows = list((await session.scalars(query.order_by(id_column).limit(request.limit + 1))).all())
    more = len(rows) > request.limit
    items = rows[: request.limit]
    return Page(items=items, next_cursor=_id_of(items[-1], id_column.key) if more and items else None)


def page_of(items: Sequence[T], *, key: Callable[[T], str], request: PageRequest) -> Page[T]:
    """One page of an in-memory list, with the same ordering and cursor rules as ``fetch_page``."""
    ordered = sorted((item for item in items if request.after is None or key(item) > request.after), key=key)
    chosen = ordered[: request.limit]
    more = len(ordered) > request.limit
    return Page(items=chosen, next_cursor=key(chosen[-1]) if more and chosen else None)


def _id_of(row: Any, attribute: str) -> str:
    return str(getattr(row, attribute))
