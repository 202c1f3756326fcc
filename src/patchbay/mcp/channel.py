"""The downstream side of one in-flight request: where upstream notifications and requests go.

A legacy client gets them on the response's SSE stream (requests get a
gateway id and the client answers with a POST that any replica may receive).
A 2026-07-28 client cannot be sent requests: they become ``input_required``
rounds, so the channel parks them until the client retries with answers.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.protocol import INTERNAL_ERROR, LOG_LEVELS, METHOD_NOT_FOUND, MISSING_CLIENT_CAPABILITY
from patchbay.mcp.session import reply_channel
from patchbay.routing.upstream.base import StreamState
from patchbay.state.base import SharedStore

Era = Literal["legacy", "modern"]

# A server→client request needs the client capability of the same name.
_CAPABILITY_OF = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
_INPUT_CAPABILITIES = frozenset(_CAPABILITY_OF.values())
_ids = itertools.count(1)


@dataclass(slots=True)
class InputRound:
    """Server→client requests waiting for a 2026-07-28 client's next retry.

    Each future resolves to ``{"result": ...}`` or ``{"error": ...}``.
    """

    requests: dict[str, JSONObject] = field(default_factory=dict)
    futures: dict[str, asyncio.Future[JSONObject]] = field(default_factory=dict)


class ResponseChannel:
    """Implements the upstream ``MessageSink`` for one downstream request."""

    def __init__(
        self,
        *,
        era: Era,
        store: SharedStore,
        client_capabilities: JSONObject,
        progress_token: Any = None,
        log_level: str | None = None,
        request_timeout: float = 300.0,
    ) -> None:
        self.era = era
        # Plain values, not an asyncio.Queue and Event: the exchange polls them when woken through
        # ``on_activity``, and every request builds a channel (most never carry a side message).
        self.queue: deque[JSONObject] = deque()
        self.input_round: InputRound | None = None
        self.input_ready = False  # an input_required round is waiting to be answered
        self._store = store
        self._caps = client_capabilities
        self._progress_token = progress_token
        # A 2026-07-28 client gets log messages only when its request asked for a level;
        # a legacy client gets them all unless its session set one.
        self._min_log = _severity(log_level) if log_level is not None else (0 if era == "legacy" else None)
        self._timeout = request_timeout
        # What the upstream's answer looks like: an event stream ("open"), one it closed to be polled ("paused").
        self.upstream_state: StreamState | None = None
        # Set by the exchange that is writing this request's response, to wake it up.
        self.on_activity: Callable[[], None] | None = None

    def may_ask_input(self) -> bool:
        """Whether an upstream can park this request on an ``input_required`` round.

        Only a 2026-07-28 client that declared sampling, elicitation or roots can be asked:
        every other request's handler runs to its end in one go.
        """
        return self.era == "modern" and not _INPUT_CAPABILITIES.isdisjoint(self._caps)

    def upstream_stream(self, state: StreamState) -> None:
        """Mirror the upstream's streaming: a resumable client gets an event stream, closed when it is polled."""
        self.upstream_state = state
        if self.on_activity is not None:
            self.on_activity()

    def _put(self, message: JSONObject) -> None:
        self.queue.append(message)
        if self.on_activity is not None:
            self.on_activity()

    async def notification(self, message: JSONObject) -> None:
        """Relay a request-scoped notification (the pool has already restored the progress token)."""
        method = message.get("method")
        if method == "notifications/progress" and self._progress_token is None:
            return
        if method == "notifications/message" and not self._wants_log(message):
            return
        self._put(message)

    def _wants_log(self, message: JSONObject) -> bool:
        if self._min_log is None:
            return False
        params = message.get("params")
        level = params.get("level") if isinstance(params, dict) else None
        return _severity(level) >= self._min_log

    async def request(self, message: JSONObject) -> JSONObject:
        """Relay a server→client request; returns the JSON-RPC response for the upstream."""
        method = str(message.get("method", ""))
        upstream_id = message.get("id")
        needed = _CAPABILITY_OF.get(method)
        if needed is not None and needed not in self._caps:
            return _error(
                upstream_id,
                MISSING_CLIENT_CAPABILITY,
                f"the client does not support {method}",
                {"requiredCapabilities": {needed: {}}},
            )
        if self.era == "modern":
            if needed is not None:
                return await self._input_required(method, message)
            # Only those three travel in an input_required round (2026-07-28). The gateway is
            # the upstream's client: it answers a ping itself, and refuses anything else.
            if method == "ping":
                return {"jsonrpc": "2.0", "id": upstream_id, "result": {}}
            return _error(upstream_id, METHOD_NOT_FOUND, f"{method} cannot be sent to a 2026-07-28 client")
        gateway_id = f"pb-{next(_ids)}-{secrets.token_hex(6)}"
        outgoing: JSONObject = {"jsonrpc": "2.0", "id": gateway_id, "method": method}
        if "params" in message:
            outgoing["params"] = message["params"]
        async with self._store.subscribe(reply_channel(gateway_id)) as replies:
            self._put(outgoing)
            try:
                async with asyncio.timeout(self._timeout):
                    async for _channel, raw in replies:
                        answer = orjson.loads(raw)
                        answer["id"] = upstream_id
                        return dict(answer)
            except TimeoutError:
                return _error(upstream_id, INTERNAL_ERROR, f"the client did not answer {method} in time")
        return _error(upstream_id, INTERNAL_ERROR, f"the client did not answer {method}")

    async def _input_required(self, method: str, message: JSONObject) -> JSONObject:
        if self.input_round is None:
            self.input_round = InputRound()
        key = f"r{len(self.input_round.requests) + 1}-{secrets.token_hex(4)}"
        request: JSONObject = {"method": method}
        if "params" in message:
            request["params"] = message["params"]
        future: asyncio.Future[JSONObject] = asyncio.get_running_loop().create_future()
        self.input_round.requests[key] = request
        self.input_round.futures[key] = future
        self.input_ready = True
        if self.on_activity is not None:
            self.on_activity()
        try:
            async with asyncio.timeout(self._timeout):
                answer = await future
        except TimeoutError:
            return _error(message.get("id"), INTERNAL_ERROR, f"the client did not answer {method} in time")
        return {"jsonrpc": "2.0", "id": message.get("id"), **answer}

    def take_round(self) -> InputRound | None:
        """Hand the parked requests to the endpoint, which answers the client with them."""
        current, self.input_round = self.input_round, None
        self.input_ready = False
        return current


def _error(request_id: Any, code: int, message: str, data: JSONObject | None = None) -> JSONObject:
    error: JSONObject = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}


def _severity(level: object) -> int:
    """A log level's rank; an unknown level counts as the most severe, so it is never hidden by mistake."""
    return LOG_LEVELS.index(level) if level in LOG_LEVELS else len(LOG_LEVELS)
