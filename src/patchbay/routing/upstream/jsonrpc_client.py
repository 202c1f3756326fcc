"""The JSON-RPC client core every transport shares: ids, in-flight requests, routing of what comes back.

Incoming messages are routed here: a response resolves its request, a notification
goes to the sink of the request it belongs to (or to the connection-level handler),
and a server→client request is relayed to the sink of its related request, whose
answer is sent back upstream under the upstream's own id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import MessageSink, NotificationHandler

logger = logging.getLogger(__name__)

METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603

Send = Callable[[JSONObject], Awaitable[None]]


class Pending:
    """One in-flight request: who waits for it and where its side messages go."""

    __slots__ = ("future", "method", "progress_token", "sink", "tasks")

    def __init__(self, method: str, sink: MessageSink | None, future: asyncio.Future[JSONObject] | None) -> None:
        self.method = method
        self.sink = sink
        self.future = future
        # The downstream client's own token, restored on the progress notifications we relay.
        self.progress_token: Any = None
        # Server→client requests being relayed for this request; cancelled when it ends.
        self.tasks: set[asyncio.Task[None]] | None = None


def response_error(name: str, message: Any) -> str | None:
    """Why ``message`` is not a usable JSON-RPC response, or None if it is one."""
    if not isinstance(message, dict):
        return f"upstream {name!r} answered with a non-object: {str(message)[:200]}"
    if "result" in message:
        return None
    error = message.get("error")
    if error is None:
        return f"upstream {name!r} answered without result or error: {str(message)[:200]}"
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("code"), int)
        or not isinstance(error.get("message"), str)
    ):
        return f"upstream {name!r} answered with an invalid error object: {str(error)[:200]}"
    return None


class RpcCore:
    """Request bookkeeping and message routing for one upstream connection."""

    def __init__(self, name: str, send: Send, on_notification: NotificationHandler | None) -> None:
        self.name = name
        self.pending: dict[int, Pending] = {}
        self._send = send
        self._on_notification = on_notification
        self._next_id = 0
        self._tasks: set[asyncio.Task[None]] = set()
        # Server→client requests being relayed, by the upstream's id (so it can cancel them).
        self._serving: dict[str | int, asyncio.Task[None]] = {}
        # The last odd thing the upstream did, quoted when a request then times out.
        self.anomaly: str | None = None
        # From 2026-07-28 on, log messages only ever concern the request in flight.
        self.request_scoped_logs = False

    def open(
        self, method: str, params: JSONObject | None, sink: MessageSink | None, *, future: bool
    ) -> tuple[int, Pending, JSONObject | None]:
        """Register a request; return its id, its record and params with the progress token made ours."""
        self._next_id += 1
        rid = self._next_id
        pending = Pending(method, sink, asyncio.get_running_loop().create_future() if future else None)
        self.pending[rid] = pending
        if params is not None:
            meta = params.get("_meta")
            # Tokens of different downstream clients may collide on a shared connection: ours is the id.
            if isinstance(meta, dict) and "progressToken" in meta:
                meta = dict(meta)
                if sink is None:
                    del meta["progressToken"]
                else:
                    pending.progress_token = meta["progressToken"]
                    meta["progressToken"] = rid
                params = {**params, "_meta": meta}
        return rid, pending, params

    def close(self, rid: int) -> None:
        """Forget a finished request and stop relaying anything on its behalf."""
        pending = self.pending.pop(rid, None)
        if pending is not None and pending.tasks:
            for task in pending.tasks:
                task.cancel()

    def fail_all(self, error: UpstreamError) -> None:
        """Fail every waiting request at once (the connection is gone)."""
        for pending in self.pending.values():
            if pending.future is not None and not pending.future.done():
                pending.future.set_exception(error)
                # Retrieved by the waiter; marking it avoids "exception never retrieved" for abandoned ones.
                pending.future.exception()

    async def dispatch(self, message: Any, related: Pending | None = None) -> None:
        """Route one incoming message; ``related`` is the request whose stream carried it, if known."""
        if not isinstance(message, dict):
            self._reject(message)
            return
        method = message.get("method")
        if method is None:
            self._resolve(message)
        elif "id" in message:
            uid = message["id"]
            task = self.spawn(self._serve(message, method, related), related)
            if isinstance(uid, str | int):
                self._serving[uid] = task
                task.add_done_callback(lambda done: self._serving.pop(uid) if self._serving.get(uid) is done else None)
        else:
            await self._notify(message, method, related)

    def _reject(self, message: Any) -> None:
        """A non-object message: fail any request it seems to answer rather than let it time out."""
        self.anomaly = f"it sent a non-object message: {str(message)[:200]}"
        logger.warning("upstream %r %s", self.name, self.anomaly)
        items = message if isinstance(message, list) else ()
        for item in items:
            rid = item.get("id") if isinstance(item, dict) else None
            pending = self.pending.get(rid) if isinstance(rid, int) else None
            if pending is not None and pending.future is not None and not pending.future.done():
                pending.future.set_exception(
                    UpstreamError(f"upstream {self.name!r} answered with a JSON array (MCP has no batches)")
                )

    def _resolve(self, message: JSONObject) -> None:
        rid = message.get("id")
        pending = self.pending.get(rid) if isinstance(rid, int) else None
        if pending is None or pending.future is None:
            if isinstance(rid, int) and 0 < rid <= self._next_id:
                logger.debug("upstream %r answered request %d after it was abandoned", self.name, rid)
            else:
                self.anomaly = f"it answered an unknown request id {rid!r}"
                logger.warning("upstream %r %s", self.name, self.anomaly)
            return
        if pending.future.done():
            return
        problem = response_error(self.name, message)
        if problem is None:
            pending.future.set_result(message)
        else:
            pending.future.set_exception(UpstreamError(problem))

    def _sole_sink(self) -> Pending | None:
        """The in-flight request a message must belong to when only one could have caused it.

        Listen streams never carry logs or server→client requests, so they are not candidates.
        """
        found = None
        for pending in self.pending.values():
            if pending.sink is not None and pending.method != "subscriptions/listen":
                if found is not None:
                    return None
                found = pending
        return found

    async def _notify(self, message: JSONObject, method: str, related: Pending | None) -> None:
        params = message.get("params")
        if method == "notifications/progress" and isinstance(params, dict):
            token = params.get("progressToken")
            pending = self.pending.get(token) if isinstance(token, int) else None
            if pending is None or pending.sink is None:
                return
            message = {**message, "params": {**params, "progressToken": pending.progress_token}}
            await self._deliver(pending.sink, message)
            return
        if method == "notifications/cancelled":
            # The upstream gave up on one of its own requests to us: stop relaying it.
            request_id = params.get("requestId") if isinstance(params, dict) else None
            if isinstance(request_id, str | int) and (task := self._serving.get(request_id)) is not None:
                task.cancel()
            return
        if related is None and method == "notifications/message" and self.request_scoped_logs:
            related = self._sole_sink()
        if related is not None:
            if related.sink is not None:
                await self._deliver(related.sink, message)
            return
        if self._on_notification is not None:
            try:
                await self._on_notification(method, params if isinstance(params, dict) else {})
            except Exception:
                logger.exception("notification handler failed for %s from upstream %r", method, self.name)

    async def _deliver(self, sink: MessageSink, message: JSONObject) -> None:
        # Delivered in order on the reading task; a sink must hand off quickly rather than block.
        try:
            await sink.notification(message)
        except Exception:
            logger.exception("message sink failed for a notification from upstream %r", self.name)

    def spawn(self, coro: Coroutine[Any, Any, None], related: Pending | None = None) -> asyncio.Task[None]:
        """Run ``coro`` in the background, cancelled with the connection (and with ``related``, if given)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if related is not None:
            if related.tasks is None:
                related.tasks = set()
            related.tasks.add(task)
            task.add_done_callback(related.tasks.discard)
        return task

    async def _serve(self, message: JSONObject, method: str, related: Pending | None) -> None:
        """Answer a server→client request: ping ourselves, the rest through the related request's sink."""
        uid = message["id"]
        if method == "ping":
            await self._reply({"jsonrpc": "2.0", "id": uid, "result": {}})
            return
        # The transport knows the request when its stream carried this; otherwise only one may fit.
        target = related if related is not None else self._sole_sink()
        if target is None or target.sink is None:
            await self._reply(_error(uid, METHOD_NOT_FOUND, f"gateway cannot tell which client {method} is for"))
            return
        try:
            answer = await target.sink.request(message)
        except Exception:
            logger.exception("message sink failed for %s from upstream %r", method, self.name)
            answer = _error(uid, INTERNAL_ERROR, f"client did not answer {method}")
        if "result" not in answer and "error" not in answer:
            answer = _error(uid, INTERNAL_ERROR, f"client answered {method} without result or error")
        await self._reply({**answer, "jsonrpc": "2.0", "id": uid})

    async def _reply(self, message: JSONObject) -> None:
        try:
            await self._send(message)
        except UpstreamError as exc:
            logger.info("could not answer upstream %r: %s", self.name, exc)

    async def aclose(self) -> None:
        """Stop relaying server→client requests."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _error(uid: Any, code: int, message: str) -> JSONObject:
    return {"jsonrpc": "2.0", "id": uid, "error": {"code": code, "message": message}}
