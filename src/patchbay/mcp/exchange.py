"""Run one handler and write its outcome: a JSON body, an SSE stream, or an input_required round.

A handler that finishes before emitting anything gets a plain JSON response.
The first notification (or, for a legacy client, server→client request)
switches the response to ``text/event-stream``. For a 2026-07-28 client a
server→client request parks the handler and answers ``input_required``; the
client's retry carries ``requestState`` and resumes it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Send

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.context import RequestContext
from patchbay.mcp.handlers import CACHEABLE, Handler
from patchbay.mcp.protocol import ERROR_HTTP_STATUS, INTERNAL_ERROR, INVALID_PARAMS, RpcError
from patchbay.mcp.resume import StreamLog, resumable
from patchbay.routing.upstream.base import StreamState
from patchbay.web.asgi import JSON_HEADERS, SSE_HEADERS, send_bytes, sse_event

logger = logging.getLogger(__name__)

CONTINUATION_PREFIX = "pbc1."
CONTINUATION_TTL = 300.0


@dataclass(slots=True)
class Outcome:
    http_status: int
    bytes_out: int
    error_code: int | None


@dataclass(slots=True)
class Continuation:
    """A handler parked on an input_required round, waiting for the client's retry."""

    ctx: RequestContext
    task: asyncio.Task[JSONObject]
    pending: dict[str, asyncio.Future[JSONObject]]
    expires: float


def finish(ctx: RequestContext, method: str, result: JSONObject) -> JSONObject:
    """Add the fields a 2026-07-28 client expects on every result."""
    if ctx.era != "modern":
        return result
    if "resultType" not in result:
        result = {**result, "resultType": "complete"}
    if method in CACHEABLE and "cacheScope" not in result:
        result = {**result, "cacheScope": "private", "ttlMs": 0}
    return result


def _response(ctx: RequestContext, method: str, task: asyncio.Task[JSONObject]) -> tuple[JSONObject, int | None]:
    exc = task.exception()
    return _answer(ctx, method, task.result() if exc is None else None, exc)


def _answer(
    ctx: RequestContext, method: str, result: JSONObject | None, exc: BaseException | None
) -> tuple[JSONObject, int | None]:
    """The JSON-RPC response to the client: the handler's result, or its error (noted for the audit)."""
    if exc is None:
        assert result is not None
        return {"jsonrpc": "2.0", "id": ctx.request_id, "result": finish(ctx, method, result)}, None
    if isinstance(exc, RpcError):
        error = exc
    else:
        error = RpcError(INTERNAL_ERROR, "internal error")
        logger.error("handler for %s failed", method, exc_info=exc)
    ctx.note.error_code = error.code
    if ctx.note.status == "ok":
        ctx.note.status = "error"
    return {"jsonrpc": "2.0", "id": ctx.request_id, "error": error.to_error()}, error.code


async def run_exchange(
    ctx: RequestContext,
    method: str,
    handler: Handler | None,
    params: JSONObject,
    send: Send,
    *,
    resume: Continuation | None = None,
    continuations: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> Outcome:
    """Drive a 2026-07-28 request's handler (or a resumed one) to its next answer and write it to ``send``.

    The handler runs in a task of its own, which an ``input_required`` round leaves parked. A
    request that cannot park (a 2025-11-25 one, or one whose client declared none of sampling,
    elicitation and roots) goes to ``run_inline``, which serves it in the request's own task.
    """
    loop = asyncio.get_running_loop()
    if resume is not None:
        task = resume.task
        ctx = resume.ctx
    else:
        assert handler is not None
        task = loop.create_task(handler(ctx, params))
    channel = ctx.channel
    wake = _Wake(loop)
    task.add_done_callback(wake.set)
    channel.on_activity = wake.set
    headers = extra_headers or []
    stream = _EventStream(ctx, send, headers)
    mirrored: StreamState | None = None
    while True:
        if not task.done() and not channel.queue and not channel.input_ready and channel.upstream_state == mirrored:
            await wake.wait()
        if channel.upstream_state != mirrored:
            mirrored = channel.upstream_state
            await stream.mirror(mirrored)
        while channel.queue:
            await stream.write(channel.queue.popleft())
        if task.done():
            response, code = _response(ctx, method, task)
            return await _final(stream, send, headers, response, code, _http_status(ctx, code))
        if channel.input_ready:
            round_ = channel.take_round()
            if round_ is None:
                continue
            # The token names this replica, so a retry that lands elsewhere can be relayed here.
            token = f"{CONTINUATION_PREFIX}{ctx.gateway.node_id}.{secrets.token_urlsafe(24)}"
            _drop_expired(continuations)  # here and at each retry: rounds never retried do not pile up
            continuations[token] = Continuation(
                ctx=ctx, task=task, pending=round_.futures, expires=time.monotonic() + CONTINUATION_TTL
            )
            channel.on_activity = None
            result = finish(
                ctx,
                method,
                {"resultType": "input_required", "inputRequests": round_.requests, "requestState": token},
            )
            response = {"jsonrpc": "2.0", "id": ctx.request_id, "result": result}
            return await _final(stream, send, headers, response, None)


def _http_status(ctx: RequestContext, code: int | None) -> int:
    """A 2026-07-28 error answer carries its HTTP status; a legacy one is always 200."""
    return ERROR_HTTP_STATUS.get(code, 200) if (code is not None and ctx.era == "modern") else 200


class _Wake:
    """A one-waiter event on a bare future: the exchange sleeps on it until the handler ends or
    the channel has something. ``asyncio.Event`` does the same for any number of waiters, with a
    list of futures and more Python per wait; every 2026-07-28 request waits once."""

    __slots__ = ("_loop", "_set", "_waiter")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._set = False
        self._waiter: asyncio.Future[None] | None = None

    def set(self, _done: object = None) -> None:
        """Wake the waiter (also a task's done callback, hence the ignored argument)."""
        self._set = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return once ``set`` was called since the last return."""
        if not self._set:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        self._set = False


async def _final(
    stream: _EventStream | None,
    send: Send,
    headers: list[tuple[bytes, bytes]],
    response: JSONObject,
    code: int | None,
    status: int = 200,
) -> Outcome:
    """The last answer: the final event when the response became a stream, else a plain JSON body."""
    if stream is not None and stream.started:
        await stream.write(response, final=True)
        return Outcome(200, stream.written, code)
    body = orjson.dumps(response)
    await send_bytes(send, status, body, JSON_HEADERS + headers)
    return Outcome(status, len(body), code)


async def run_inline(
    ctx: RequestContext,
    method: str,
    handler: Handler,
    params: JSONObject,
    send: Send,
    headers: list[tuple[bytes, bytes]],
) -> Outcome:
    """A request nothing can park: the handler runs in the request's own task.

    A legacy client answers server→client requests with POSTs while the stream stays open, and
    a 2026-07-28 client that declared no sampling, elicitation or roots is never asked for
    input (``ResponseChannel.may_ask_input``), so no task has to outlive the response. Most
    calls end with nothing on the side and get a plain JSON body; the first side message (or
    upstream stream state to mirror) starts a writer task that streams events while the handler
    goes on, as the task path does. Measured (decision 0008): a task, a wake-up event and a loop turn per request.
    """
    channel = ctx.channel
    side = _SideWriter(ctx, send, headers)
    channel.on_activity = side.wake
    result: JSONObject | None = None
    error: BaseException | None = None
    try:
        result = await handler(ctx, params)
    except asyncio.CancelledError:
        side.cancel()
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of the handler is the client's error response
        error = exc
    finally:
        channel.on_activity = None
    if side.started or channel.queue or channel.upstream_state is not None:
        await side.finish()
    response, code = _answer(ctx, method, result, error)
    return await _final(side.stream, send, headers, response, code, _http_status(ctx, code))


class _SideWriter:
    """Writes an inline request's side messages from a task started by the first one.

    Its event stream is made with the first side message too: most calls never have one.
    """

    __slots__ = ("_ctx", "_done", "_headers", "_mirrored", "_send", "_task", "_wake", "stream")

    def __init__(self, ctx: RequestContext, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._ctx = ctx
        self._send = send
        self._headers = headers
        self.stream: _EventStream | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: _Wake | None = None
        self._mirrored: StreamState | None = None
        self._done = False

    @property
    def started(self) -> bool:
        """True once a side message started the writer task."""
        return self._task is not None

    def wake(self) -> None:
        if self._task is None:
            loop = asyncio.get_running_loop()
            self._wake = _Wake(loop)
            self._task = loop.create_task(self._run())
        else:
            assert self._wake is not None
            self._wake.set()

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self.flush()
            if self._done:
                return
            await self._wake.wait()

    async def flush(self) -> None:
        """Mirror the upstream's stream state and write every queued message, in order."""
        channel, stream = self._ctx.channel, self.stream
        if stream is None:
            stream = self.stream = _EventStream(self._ctx, self._send, self._headers)
        if channel.upstream_state != self._mirrored:
            self._mirrored = channel.upstream_state
            await stream.mirror(self._mirrored)
        while channel.queue:
            await stream.write(channel.queue.popleft())

    async def finish(self) -> None:
        """Once the handler is done: let the writer task end, then write whatever is left."""
        if self._task is not None:
            assert self._wake is not None
            self._done = True
            self._wake.set()
            await self._task
        await self.flush()

    def cancel(self) -> None:
        if self._task is not None:
            if self._task.done():
                if not self._task.cancelled():
                    self._task.exception()  # retrieved: the request is being cancelled anyway
            else:
                self._task.cancel()


class _EventStream:
    """The SSE side of a response: plain events, or resumable ones for a 2025-11-25 session (SEP-1699)."""

    def __init__(self, ctx: RequestContext, send: Send, headers: list[tuple[bytes, bytes]]) -> None:
        self._send = send
        self._headers = headers
        # The log (and its random stream id) is made when the stream starts: most responses never do.
        self._resumable_in = ctx if ctx.session is not None and resumable(ctx.protocol_version) else None
        self._log: StreamLog | None = None
        self.started = False
        self.detached = False
        self.written = 0

    async def _start(self) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + self._headers})
        ctx = self._resumable_in
        if ctx is not None and ctx.session is not None:
            self._log = StreamLog(ctx.gateway.store, session_id=ctx.session.id)
            primer = await self._log.priming()
            self.written += len(primer)
            await self._send({"type": "http.response.body", "body": primer, "more_body": True})

    async def write(self, message: JSONObject, *, final: bool = False) -> None:
        """Send one message (kept for a resuming client when the stream is resumable)."""
        if not self.started:
            await self._start()
        chunk = await self._log.event(message, final=final) if self._log is not None else sse_event(message)
        self.written += len(chunk)
        if not self.detached:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": not final})

    async def mirror(self, state: StreamState | None) -> None:
        """Follow the upstream: stream when it streams, close when it closes to be polled.

        Only a client that can resume gets either; the others keep a plain response.
        """
        if self._resumable_in is None or state is None or self.detached:
            return
        if not self.started:
            await self._start()
        if state == "paused":
            # The client reconnects with Last-Event-ID; the events keep being recorded meanwhile.
            self.detached = True
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})


def continuation_owner(params: JSONObject) -> str | None:
    """The replica holding the request a retry's ``requestState`` resumes; None when it is not a gateway token."""
    state = params.get("requestState")
    if not isinstance(state, str) or not state.startswith(CONTINUATION_PREFIX):
        return None
    node, sep, _rest = state[len(CONTINUATION_PREFIX) :].partition(".")
    return node if sep else None


def take_continuation(
    continuations: dict[str, Any], params: JSONObject, *, key_id: str, request_id: Any
) -> Continuation | None:
    """The parked handler a retry resumes, with the client's answers delivered; None if not ours."""
    state = params.get("requestState")
    if not isinstance(state, str) or not state.startswith(CONTINUATION_PREFIX):
        return None
    _drop_expired(continuations)
    found = continuations.pop(state, None)
    if not isinstance(found, Continuation) or found.ctx.principal.key_id != key_id:
        raise RpcError(INVALID_PARAMS, "requestState is unknown or expired; send the request again without it")
    answers = params.get("inputResponses") or {}
    if not isinstance(answers, dict):
        raise RpcError(INVALID_PARAMS, "inputResponses must be an object")
    for key, future in found.pending.items():
        if future.done():
            continue
        if key in answers and isinstance(answers[key], dict):
            future.set_result({"result": answers[key]})
        else:
            future.set_result({"error": {"code": INVALID_PARAMS, "message": f"the client did not answer {key}"}})
    found.ctx.request_id = request_id
    return found


def _drop_expired(continuations: dict[str, Any]) -> None:
    """Forget (and stop) the parked handlers whose client did not retry in time."""
    now = time.monotonic()
    for token in [t for t, c in continuations.items() if c.expires < now]:
        stale = continuations.pop(token)
        stale.task.cancel()
