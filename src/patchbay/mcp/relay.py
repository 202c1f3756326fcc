"""Carry a 2026-07-28 retry to the replica that holds its parked request.

An ``input_required`` round parks the handler (and its upstream call) in the
process that started it; the ``requestState`` token names that process. When
the client's retry lands on another replica, that replica publishes the retry
on the owner's channel in the shared store, and the owner resumes the handler
with a ``send`` that publishes each ASGI message back. The receiving replica
writes them to its client as they come, so JSON and SSE answers both pass.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import Message, Send

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp.exchange import Outcome, run_exchange, take_continuation
from patchbay.mcp.protocol import INVALID_PARAMS, RpcError, error_message
from patchbay.state.base import SharedStore
from patchbay.web.asgi import send_json

logger = logging.getLogger(__name__)

# How long the receiving replica waits for the owner's first message before giving up on it.
FIRST_ANSWER_SECONDS = 5.0


def node_channel(node_id: str) -> str:
    return f"mcp:node:{node_id}"


@dataclass(frozen=True, slots=True)
class RelayedRetry:
    """A retry as the owning replica receives it."""

    method: str
    params: JSONObject
    request_id: Any
    key_id: str


def _encode(message: Message) -> bytes:
    out: dict[str, Any] = {"type": message["type"]}
    if message["type"] == "http.response.start":
        out["status"] = message["status"]
        out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in message.get("headers", [])]
    else:
        out["body"] = base64.b64encode(message.get("body", b"")).decode()
        out["more_body"] = bool(message.get("more_body", False))
    return orjson.dumps(out)


def _decode(raw: bytes) -> Message:
    data = orjson.loads(raw)
    if data["type"] == "http.response.start":
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in data["headers"]]
        return {"type": data["type"], "status": data["status"], "headers": headers}
    return {"type": data["type"], "body": base64.b64decode(data["body"]), "more_body": data["more_body"]}


class ContinuationRelay:
    """This replica's end of the relay: forwards retries out, and serves the ones sent to it."""

    def __init__(self, store: SharedStore, node_id: str, continuations: dict[str, Any]) -> None:
        self._store = store
        self.node_id = node_id
        self._continuations = continuations
        self._listener: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Serve retries addressed to this replica until closed."""
        ready = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(ready))
        # Listening before the first token is handed out: no retry can race the subscription.
        waiter = asyncio.ensure_future(ready.wait())
        await asyncio.wait({waiter, self._listener}, return_when="FIRST_COMPLETED")
        waiter.cancel()

    async def _listen(self, ready: asyncio.Event) -> None:
        while True:
            try:
                async with self._store.subscribe(node_channel(self.node_id)) as incoming:
                    ready.set()
                    async for _channel, raw in incoming:
                        task = asyncio.create_task(self._serve(raw))
                        self._running.add(task)
                        task.add_done_callback(self._running.discard)
            except asyncio.CancelledError:
                raise
            except Exception:  # the shared store went away: keep trying, retries meanwhile time out
                ready.set()
                logger.exception("continuation relay lost its subscription; resubscribing")
                await asyncio.sleep(1.0)

    async def _serve(self, raw: bytes) -> None:
        envelope = orjson.loads(raw)
        reply = str(envelope["reply"])
        retry = RelayedRetry(
            method=str(envelope["method"]),
            params=envelope["params"],
            request_id=envelope["request_id"],
            key_id=str(envelope["key_id"]),
        )

        async def send_back(message: Message) -> None:
            await self._store.publish(reply, _encode(message))

        try:
            found = take_continuation(
                self._continuations, retry.params, key_id=retry.key_id, request_id=retry.request_id
            )
        except RpcError as exc:
            await send_json(send_back, 400, error_message(retry.request_id, exc.code, exc.message))
            return
        if found is None:
            await send_json(send_back, 400, error_message(retry.request_id, INVALID_PARAMS, "requestState is unknown"))
            return
        await run_exchange(
            found.ctx, retry.method, None, retry.params, send_back, resume=found, continuations=self._continuations
        )

    async def forward(self, owner: str, retry: RelayedRetry, send: Send) -> Outcome:
        """Have ``owner`` resume the parked request and write its answer to ``send``."""
        reply = f"mcp:relay:{secrets.token_urlsafe(16)}"
        envelope = {
            "reply": reply,
            "method": retry.method,
            "params": retry.params,
            "request_id": retry.request_id,
            "key_id": retry.key_id,
        }
        status, written = 200, 0
        async with self._store.subscribe(reply) as answers:
            await self._store.publish(node_channel(owner), orjson.dumps(envelope))
            iterator = answers.__aiter__()
            try:
                async with asyncio.timeout(FIRST_ANSWER_SECONDS) as deadline:
                    while True:
                        _channel, raw = await iterator.__anext__()
                        message = _decode(raw)
                        # Once it answers, the owner's own deadlines bound the rest.
                        deadline.reschedule(None)
                        if message["type"] == "http.response.start":
                            status = int(message["status"])
                        else:
                            written += len(message["body"])
                        await send(message)
                        if message["type"] == "http.response.body" and not message["more_body"]:
                            return Outcome(status, written, None)
            except TimeoutError:
                body = orjson.dumps(
                    error_message(
                        retry.request_id,
                        INVALID_PARAMS,
                        "requestState is unknown or expired; send the request again without it",
                    )
                )
                with contextlib.suppress(OSError, RuntimeError):
                    await send(
                        {
                            "type": "http.response.start",
                            "status": 400,
                            "headers": [(b"content-type", b"application/json")],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                return Outcome(400, len(body), INVALID_PARAMS)

    async def aclose(self) -> None:
        tasks = [t for t in (self._listener, *self._running) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
