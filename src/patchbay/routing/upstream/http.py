"""Streamable HTTP upstreams: one POST per message, answered with JSON or an event stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import orjson

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import MessageSink, NotificationHandler, Transport, UpstreamSpec
from patchbay.routing.upstream.bearer import BearerClient
from patchbay.routing.upstream.deadlines import Deadlines
from patchbay.routing.upstream.h1 import H1Error, H1Pool, Response
from patchbay.routing.upstream.h1_request import EncodedHeaders
from patchbay.routing.upstream.http_common import (
    HttpStatusError,
    iter_events,
    parse_url,
    status_error,
    transport_error,
)
from patchbay.routing.upstream.jsonrpc_client import Pending, RpcCore, response_error
from patchbay.routing.upstream.protocol import (
    REQUEST_TIMEOUT,
    VERSION_KEY,
    Negotiated,
    envelope,
    initialize,
    modern_headers,
    negotiate,
    settle,
    stamp_modern,
    strip_envelope,
)
from patchbay.routing.upstream.tool_headers import ToolHeaders, is_header_mismatch
from patchbay.tracecontext import TRACEPARENT

logger = logging.getLogger(__name__)

SESSION_HEADER = "mcp-session-id"
_UNCANCELLABLE = frozenset({"initialize", "server/discover"})


# Resuming a polled stream: the upstream's retry hint is honoured up to this long, and a
# stream that keeps closing without a new event is given up after this many attempts.
_MAX_RETRY_MS = 5000
_MAX_EMPTY_RESUMES = 3


@dataclass(slots=True)
class _Cursor:
    """Where a response stream may be resumed from."""

    last_id: str | None = None
    retry_ms: int = 1000
    progressed: bool = False


def _encoded(headers: dict[str, str]) -> Mapping[str, str]:
    """Headers sent with many messages, encoded once; as they are if they cannot travel (each send says so)."""
    try:
        return EncodedHeaders(headers)
    except ValueError:
        return headers


class _SessionExpired(Exception):
    def __init__(self, session_id: str) -> None:
        self.session_id = session_id


class HttpConnection:
    """A connection to a Streamable HTTP upstream over the pool's shared HTTP client."""

    transport: ClassVar[Transport] = "streamable_http"

    def __init__(self, spec: UpstreamSpec, client: H1Pool, on_notification: NotificationHandler | None) -> None:
        self._url = parse_url(spec.name, spec.url)
        self.url = str(self._url)
        self.spec = spec
        self.protocol_version = ""
        self.server_info: JSONObject = {}
        self.capabilities: JSONObject = {}
        self.instructions: str | None = None
        self._client: H1Pool | BearerClient = client if spec.auth is None else BearerClient(client, spec.auth)
        self._core = RpcCore(spec.name, self._post, on_notification)
        self._base = {
            **spec.headers,
            "accept": "application/json, text/event-stream",
            "content-type": "application/json",
        }
        # Headers of every legacy-era message (session id and version included once known).
        self._headers = _encoded(self._base)
        self._envelope: JSONObject | None = None
        self._session_id: str | None = None
        self._reinit = asyncio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._callers: dict[int, asyncio.Task[object]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines = Deadlines()
        self._aborted: set[int] = set()
        self._closed = False
        self._tool_headers = ToolHeaders()

    @property
    def closed(self) -> bool:
        return self._closed

    @classmethod
    async def open(
        cls,
        spec: UpstreamSpec,
        *,
        client: H1Pool,
        connect_timeout: float,
        on_notification: NotificationHandler | None = None,
    ) -> HttpConnection:
        """Connect and negotiate the protocol era."""
        conn = cls(spec, client, on_notification)
        await settle(conn, spec.name, connect_timeout, conn._handshake(min(10.0, connect_timeout / 2), connect_timeout))
        return conn

    async def request(
        self,
        method: str,
        params: JSONObject | None,
        *,
        timeout: float,  # noqa: ASYNC109 - the connection must know it to cancel upstream
        sink: MessageSink | None = None,
    ) -> JSONObject:
        """Send a request and return its JSON-RPC response (see ``UpstreamConnection.request``)."""
        if self._envelope is None:
            if params is not None and "_meta" in params:
                params = strip_envelope(params)
            return await self._roundtrip(method, params, self._headers, timeout, sink)
        params = stamp_modern(params, self._envelope)
        response = await self._roundtrip(method, params, self._modern_headers(method, params), timeout, sink)
        if method == "tools/list":
            self._tool_headers.learn(response)
        elif method == "tools/call" and not self._tool_headers.loaded and is_header_mismatch(response):
            # It wants Mcp-Param headers for a tool we never saw listed: learn them, then retry once
            # (the upstream checks headers before running the tool, so nothing ran).
            await self._list_all_tools(timeout)
            response = await self._roundtrip(method, params, self._modern_headers(method, params), timeout, sink)
        return response

    def _modern_headers(self, method: str, params: JSONObject) -> dict[str, str]:
        headers = modern_headers(self._base, self.protocol_version, method, params)
        if method == "tools/call":
            self._tool_headers.add_to(headers, params)
        return headers

    async def _list_all_tools(self, seconds: float) -> None:
        self._tool_headers.loaded = True
        cursor = None
        for _ in range(100):
            page = await self.request("tools/list", {"cursor": cursor} if cursor else None, timeout=seconds)
            result = page.get("result")
            cursor = result.get("nextCursor") if isinstance(result, dict) else None
            if not cursor:
                return

    async def _roundtrip(
        self,
        method: str,
        params: JSONObject | None,
        headers: Mapping[str, str],
        seconds: float,
        sink: MessageSink | None,
    ) -> JSONObject:
        if self._closed:
            raise self._closed_error()
        rid, pending, params = self._core.open(method, params, sink, future=False)
        message: JSONObject = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        # With the loop named, Python 3.11's current_task() skips get_running_loop() (a getpid()
        # system call per call there).
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        assert task is not None
        self._callers[rid] = task
        # Our deadline cancels this task, as asyncio.timeout() would; what the count of
        # cancellations was tells our own cancellation from anyone else's.
        cancelling = task.cancelling()
        self._deadlines.start(rid, task, seconds)
        try:
            try:
                return await self._exchange(message, headers, pending)
            except _SessionExpired as expired:
                await self._reinitialize(expired.session_id, seconds)
                return await self._exchange(message, self._headers, pending)
        except TimeoutError:
            self._cancel_upstream(rid, method, "timed out")
            raise self._timeout(method, seconds) from None
        except asyncio.CancelledError:
            if self._deadlines.expired(rid) and task.uncancel() <= cancelling:
                self._cancel_upstream(rid, method, "timed out")
                raise self._timeout(method, seconds) from None
            if rid in self._aborted and task.uncancel() == 0:
                raise self._closed_error() from None
            self._cancel_upstream(rid, method, "the client went away")
            raise
        finally:
            self._deadlines.stop(rid)
            del self._callers[rid]
            self._aborted.discard(rid)
            self._core.close(rid)

    def _timeout(self, method: str, seconds: float) -> UpstreamTimeout:
        return UpstreamTimeout(f"upstream {self.spec.name!r} did not answer {method} within {seconds:g} s")

    def _cancel_upstream(self, rid: int, method: str, reason: str) -> None:
        # Modern HTTP has no client→server notifications: closing the POST's stream is the cancellation.
        if self._envelope is None and method not in _UNCANCELLABLE and not self._closed:
            self._core.spawn(self.notify("notifications/cancelled", {"requestId": rid, "reason": reason}))

    async def _exchange(self, message: JSONObject, headers: Mapping[str, str], pending: Pending) -> JSONObject:
        """POST one request and read its answer, relaying whatever else its event stream carries."""
        name, rid = self.spec.name, message["id"]
        try:
            traceparent = TRACEPARENT.get()
            if traceparent is not None:
                headers = {**headers, "traceparent": traceparent}
            resp = await self._client.request("POST", self._url, headers, orjson.dumps(message))
        except H1Error as exc:
            raise transport_error(name, self.url, exc) from exc
        except ValueError as exc:  # a header value that cannot travel (CR/LF)
            raise UpstreamError(f"upstream {name!r}: cannot send the request: {exc}") from exc
        try:
            if resp.status == 404 and SESSION_HEADER in headers:
                raise _SessionExpired(headers[SESSION_HEADER])
            if resp.status >= 400:
                return await self._error_answer(resp, rid)
            if message["method"] == "initialize":
                self._session_id = resp.headers.get(SESSION_HEADER)
            ctype = resp.headers.get("content-type", "").lower()
            if ctype.startswith("application/json"):
                return self._checked(self._decode(await resp.read()), rid)
            if ctype.startswith("text/event-stream"):
                return await self._read_stream(resp, rid, pending)
            if resp.status == 202:
                raise UpstreamError(f"upstream {name!r} accepted {message['method']} without answering it")
            raise UpstreamError(f"upstream {name!r} answered with unexpected content type {ctype!r}")
        except H1Error as exc:
            raise transport_error(name, self.url, exc) from exc
        finally:
            resp.close()

    async def _read_stream(self, resp: Response, rid: int, pending: Pending) -> JSONObject:
        """Read a response stream to its answer, resuming it when the upstream closes it early (SEP-1699)."""
        cursor = _Cursor()
        if pending.sink is not None:
            pending.sink.upstream_stream("open")
        answer = await self._relay_until_answer(resp, rid, pending, cursor)
        # A stream closed before the answer is a poll, if the upstream gave us somewhere to resume from.
        attempts = 0
        while answer is None and cursor.last_id is not None and self._session_id is not None:
            attempts = 0 if cursor.progressed else attempts + 1
            if attempts >= _MAX_EMPTY_RESUMES:
                break
            if pending.sink is not None:
                pending.sink.upstream_stream("paused")
            await asyncio.sleep(min(cursor.retry_ms, _MAX_RETRY_MS) / 1000)
            headers = {**self._headers, "accept": "text/event-stream", "last-event-id": cursor.last_id}
            try:
                resumed = await self._client.request("GET", self._url, headers)
            except H1Error as exc:
                raise transport_error(self.spec.name, self.url, exc) from exc
            try:
                if resumed.status != 200:
                    raise status_error(self.spec.name, resumed)
                cursor.progressed = False
                answer = await self._relay_until_answer(resumed, rid, pending, cursor)
            finally:
                await resumed.aclose()
        if answer is None:
            raise UpstreamError(f"upstream {self.spec.name!r} ended its event stream without answering")
        return answer

    async def _relay_until_answer(
        self, resp: Response, rid: int, pending: Pending, cursor: _Cursor
    ) -> JSONObject | None:
        async for event in iter_events(resp):
            if event.id is not None and event.id != cursor.last_id:
                cursor.last_id, cursor.progressed = event.id, True
            if event.retry_ms is not None:
                cursor.retry_ms = event.retry_ms
            if event.event != "message" or not event.data.strip():
                continue  # a priming event: only its id and retry matter
            incoming = self._decode(event.data)
            if isinstance(incoming, dict) and "method" not in incoming and incoming.get("id") == rid:
                return self._checked(incoming, rid)
            await self._core.dispatch(incoming, pending)
        return None

    def _decode(self, data: bytes | str) -> object:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"upstream {self.spec.name!r} sent invalid JSON: {data[:200]!r}") from None

    def _checked(self, message: object, rid: int) -> JSONObject:
        """``message`` if it is a JSON-RPC response to request ``rid``, else an UpstreamError."""
        problem = response_error(self.spec.name, message)
        if problem is not None:
            raise UpstreamError(problem)
        assert isinstance(message, dict)
        if message.get("id") != rid:
            raise UpstreamError(f"upstream {self.spec.name!r} answered an unknown request id {message.get('id')!r}")
        return message

    async def _error_answer(self, resp: Response, rid: int) -> JSONObject:
        """A JSON-RPC error carried by an HTTP error status, else an HttpStatusError."""
        if resp.status not in (401, 403) and resp.headers.get("content-type", "").lower().startswith(
            "application/json"
        ):
            with contextlib.suppress(orjson.JSONDecodeError):
                body = orjson.loads(await resp.read())
                if isinstance(body, dict) and "error" in body and response_error("", body) is None:
                    # The server may not have read our id before rejecting the request.
                    return {**body, "id": rid}
        raise status_error(self.spec.name, resp)

    async def _post(self, message: JSONObject) -> None:
        """POST a notification or a response to a server→client request."""
        try:
            resp = await self._client.request("POST", self._url, self._headers, orjson.dumps(message))
            await resp.read()
        except H1Error as exc:
            raise transport_error(self.spec.name, self.url, exc) from exc
        if resp.status >= 400:
            raise status_error(self.spec.name, resp)

    async def notify(self, method: str, params: JSONObject | None = None) -> None:
        """Send a notification upstream (dropped on modern HTTP, whose wire has none from the client)."""
        if self._envelope is not None:
            return
        message: JSONObject = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._post(message)

    async def _raw(self, method: str, params: JSONObject, seconds: float) -> JSONObject:
        """A negotiation request: headers follow the message, not the (not yet settled) era."""
        meta = params.get("_meta")
        if isinstance(meta, dict) and VERSION_KEY in meta:
            headers = modern_headers(self._base, meta[VERSION_KEY], method, params)
        else:
            headers = self._base
        return await self._roundtrip(method, params, headers, seconds, None)

    async def _handshake(self, probe_seconds: float, seconds: float) -> None:
        """Negotiate the era and record what the server said about itself."""

        async def call(method: str, params: JSONObject) -> JSONObject:
            if method != "server/discover":
                return await self._raw(method, params, seconds)
            try:
                return await self._raw(method, params, probe_seconds)
            except HttpStatusError as exc:
                # A bare HTTP rejection of the probe is not modern evidence (unless it is about credentials).
                if exc.status in (401, 403):
                    raise
                return {"error": {"code": -32601, "message": str(exc)}}
            except UpstreamTimeout:
                return {"error": {"code": REQUEST_TIMEOUT, "message": "server/discover timed out"}}

        self._adopt(await negotiate(self.spec.name, self.spec.era, call))
        if self._envelope is None:
            await self.notify("notifications/initialized")
            self._listener = asyncio.ensure_future(self._listen())

    def _adopt(self, negotiated: Negotiated) -> None:
        self.protocol_version = negotiated.protocol_version
        self.server_info = negotiated.server_info
        self.capabilities = negotiated.capabilities
        self.instructions = negotiated.instructions
        if negotiated.modern:
            self._envelope = envelope(negotiated.protocol_version)
            self._headers = _encoded(self._base)
            return
        self._envelope = None
        headers = {**self._base, "mcp-protocol-version": negotiated.protocol_version}
        if self._session_id:
            headers[SESSION_HEADER] = self._session_id
        self._headers = _encoded(headers)

    async def _reinitialize(self, expired: str, seconds: float) -> None:
        """Start a new legacy session after the upstream forgot ours (HTTP 404), once per lost session."""
        async with self._reinit:
            if self._session_id != expired:
                return
            logger.info("upstream %r lost session %s; initializing a new one", self.spec.name, expired)
            self._session_id = None
            settled = await initialize(self.spec.name, lambda m, p: self._raw(m, p, seconds))
            if not isinstance(settled, Negotiated):
                raise UpstreamError(f"upstream {self.spec.name!r} refused a new session: {settled.get('error')}")
            self._adopt(settled)
            await self.notify("notifications/initialized")
            if self._listener is None or self._listener.done():
                self._listener = asyncio.ensure_future(self._listen())

    async def _listen(self) -> None:
        """Relay what a legacy upstream sends on its standalone GET stream (list_changed and the like)."""
        failures = 0
        while not self._closed and failures < 3:
            headers = {**self._headers, "accept": "text/event-stream"}
            try:
                async with await self._client.request("GET", self._url, headers) as resp:
                    if resp.status != 200:
                        return  # 405: this server offers no such stream
                    failures = 0
                    async for event in iter_events(resp):
                        if event.event == "message":
                            with contextlib.suppress(orjson.JSONDecodeError):
                                await self._core.dispatch(orjson.loads(event.data))
            except H1Error as exc:
                failures += 1
                logger.debug("GET stream of upstream %r failed: %s", self.spec.name, exc)
            await asyncio.sleep(0.5 * (failures + 1))

    def _closed_error(self) -> UpstreamError:
        return UpstreamError(f"upstream {self.spec.name!r} connection was closed")

    async def aclose(self) -> None:
        """Fail in-flight requests, stop listening and end the legacy session."""
        if self._closed:
            return
        self._closed = True
        current = asyncio.current_task()
        for rid, task in self._callers.items():
            if task is not current:
                self._aborted.add(rid)
                task.cancel()
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._core.aclose()
        self._deadlines.close()
        if self._session_id and self._envelope is None:
            with contextlib.suppress(H1Error, TimeoutError, RuntimeError):
                async with asyncio.timeout(2.0):
                    await (await self._client.request("DELETE", self._url, self._headers)).aclose()
