"""Refuse NUL characters anywhere in a request: PostgreSQL text cannot hold them (SQLite silently does)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Request

from patchbay.errors import InvalidInput


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):  # query parameters arrive as (name, value) pairs
        return any(_has_nul(v) for v in value)
    return False


async def refuse_nul(request: Request) -> None:
    """InvalidInput when the path, the query or a JSON body string holds a NUL character."""
    if _has_nul(dict(request.path_params)) or _has_nul(list(request.query_params.multi_items())):
        raise InvalidInput("the request contains a NUL character")
    body = await request.body()
    if body and b"\\u0000" in body.lower():
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # FastAPI reports malformed JSON itself
        if _has_nul(parsed):
            raise InvalidInput("the request body contains a NUL character")
