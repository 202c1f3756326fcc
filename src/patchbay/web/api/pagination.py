"""The list envelope of the REST API: ``{"items": [...], "next_cursor": "..." | null}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

from patchbay.services.paging import CURSOR_PATTERN, DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest

T = TypeVar("T")
Out = TypeVar("Out", bound=BaseModel)


class PageOut(BaseModel, Generic[Out]):
    """One page; pass ``next_cursor`` back as ``cursor`` for the next one (null: no more)."""

    items: list[Out]
    next_cursor: str | None


def _page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(pattern=CURSOR_PATTERN, description="The next_cursor of the previous page.")
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, after=cursor)


Paging = Annotated[PageRequest, Depends(_page_request)]


def page_out(page: Page[T], shape: Callable[[T], Out]) -> PageOut[Out]:
    """A service page shaped for the wire."""
    return PageOut(items=[shape(item) for item in page.items], next_cursor=page.next_cursor)
