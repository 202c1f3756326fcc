"""Legacy HTTP+SSE upstreams (2024-11-05): answers arrive on a GET event stream, messages go by POST."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urljoin, urlsplit

import orjson

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import NotificationHandler, UpstreamSpec
from patchbay.routing.upstream.bearer import BearerClient
from patchbay.routing.upstream.h1 import H1Error, H1Pool, Response
from patchbay.routing.upstream.http_common import iter_events, parse_url, status_error, transport_error
from patchbay.routing.upstream.protocol import settle
from patchbay.routing.upstream.stream import StreamConnection

logger = logging.getLogger(__name__)


class SseConnection(StreamConnection):
    """One event stream from a legacy SSE upstream and the endpoint it told us to POST to."""

    transport = "sse"

    def __init__(self, spec: UpstreamSpec, client: H1Pool, on_notification: NotificationHandler | None) -> None:
        self._url = parse_url(spec.name, spec.url)
        super().__init__(spec, on_notification)
        self.url = str(self._url)
        self._client: H1Pool | BearerClient = client if spec.auth is None else BearerClient(client, spec.auth)
        self._post_headers = {**spec.headers, "content-type": "application/json"}
        self._endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        spec: UpstreamSpec,
        *,
        client: H1Pool,
        connect_timeout: float,
        on_notification: NotificationHandler | None = None,
    ) -> SseConnection:
        """Open the event stream, wait for the endpoint event and negotiate the protocol."""
        conn = cls(spec, client, on_notification)
        conn._reader = asyncio.ensure_future(conn._read())

        async def steps() -> None:
            await conn._endpoint
            await conn._handshake(min(10.0, connect_timeout / 2), connect_timeout)

        await settle(conn, spec.name, connect_timeout, steps())
        return conn

    def _set_endpoint(self, data: str) -> None:
        endpoint = urljoin(self.url, data)
        ours, theirs = urlsplit(self.url), urlsplit(endpoint)
        # Never POST (with the upstream's credentials) anywhere but where the stream came from.
        if (ours.scheme, ours.netloc) != (theirs.scheme, theirs.netloc):
            raise UpstreamError(f"upstream {self.spec.name!r} named an endpoint on another origin: {endpoint}")
        if not self._endpoint.done():
            self._endpoint.set_result(endpoint)

    async def _read(self) -> None:
        headers = {**self.spec.headers, "accept": "text/event-stream"}
        name = self.spec.name
        error = UpstreamError(f"upstream {name!r} closed its event stream")
        try:
            async with await self._client.request("GET", self._url, headers) as resp:
                if resp.status != 200:
                    raise status_error(name, resp)
                try:
                    await self._relay(resp)
                except H1Error:
                    # A server that dies mid-stream breaks the chunked body; that is still "closed".
                    logger.debug("event stream of upstream %r broke", name, exc_info=True)
        except H1Error as exc:
            error = transport_error(name, self.url, exc)
        except UpstreamError as exc:
            error = exc
        if not self._endpoint.done():
            self._endpoint.set_exception(error)
        self._mark_dead(error)

    async def _relay(self, resp: Response) -> None:
        async for event in iter_events(resp):
            if event.event == "endpoint":
                self._set_endpoint(event.data)
            elif event.event == "message":
                try:
                    message = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    logger.warning("upstream %r sent non-JSON: %.200r", self.spec.name, event.data)
                    continue
                await self._core.dispatch(message)

    async def _write(self, message: JSONObject) -> None:
        if self._error is not None:
            raise self._error
        endpoint = await self._endpoint
        try:
            resp = await self._client.request("POST", endpoint, self._post_headers, orjson.dumps(message))
            await resp.read()
        except H1Error as exc:
            raise transport_error(self.spec.name, endpoint, exc) from exc
        if resp.status >= 400:
            error = status_error(self.spec.name, resp)
            if resp.status == 404:
                self._mark_dead(error)  # the upstream forgot this stream's session
            raise error

    async def aclose(self) -> None:
        """Close the event stream and fail whatever was still waiting."""
        self._mark_dead(UpstreamError(f"upstream {self.spec.name!r} connection was closed"))
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if not self._endpoint.done():
            self._endpoint.cancel()
        await self._core.aclose()
