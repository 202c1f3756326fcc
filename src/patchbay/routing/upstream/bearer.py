"""The HTTP client of a connection whose requests carry a bearer fetched per request (OAuth upstreams).

It wraps the pool's shared client, so connections without ``spec.auth`` pay nothing for it.
A 401 answer gets one retry with whatever token ``CallAuth.rejected`` made current.
"""

from __future__ import annotations

from patchbay.routing.upstream.base import CallAuth
from patchbay.routing.upstream.h1 import URL, H1Pool, Response
from patchbay.routing.upstream.h1_request import Headers


def _with_authorization(headers: Headers, value: str) -> Headers:
    if isinstance(headers, list):
        kept = [(k, v) for k, v in headers if k.lower() != b"authorization"]
        return [*kept, (b"authorization", value.encode("latin-1"))]
    kept_map = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    kept_map["authorization"] = value
    return kept_map


class BearerClient:
    """``H1Pool.request`` with the caller's current ``Authorization`` header set on every request."""

    __slots__ = ("_auth", "_inner")

    def __init__(self, inner: H1Pool, auth: CallAuth) -> None:
        self._inner = inner
        self._auth = auth

    async def request(self, method: str, url: URL | str, headers: Headers, body: bytes = b"") -> Response:
        value = await self._auth.authorization()
        resp = await self._inner.request(method, url, _with_authorization(headers, value), body)
        if resp.status != 401:
            return resp
        await resp.aclose()
        await self._auth.rejected(value)
        retry = await self._auth.authorization()
        return await self._inner.request(method, url, _with_authorization(headers, retry), body)
