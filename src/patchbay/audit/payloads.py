"""Payload capture: request and response bodies as redacted gzip JSON in the object store.

The request path only collects bytes (``ResponseTap``) and hands them over; a background
task redacts, compresses and stores them, then passes the audit record on to the
``AuditWriter`` with ``payload_key`` and ``payload_stored_at`` filled in. A payload that
cannot be stored costs the payload, never the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import orjson
from starlette.types import Message, Send

from patchbay.audit.events import AuditEvent
from patchbay.audit.objects import LocalObjectStore, ObjectStore
from patchbay.audit.redact import redact_json, redact_serialized, redact_text
from patchbay.audit.writer import AuditWriter, Signal
from patchbay.store.models import utcnow

logger = logging.getLogger(__name__)

_COMPRESS_IN_THREAD = 64 * 1024  # smaller bodies compress faster than a thread hop costs
_INLINE_CHUNK = 8  # payloads written on the event loop between two turns of it
_SLOW_WRITE = 0.002  # s per payload, encoding included (~0.05 ms on this box when the folder is fine)
_SLOW_CHUNKS = 3  # in a row, before the folder counts as slow
_THREAD_SPELL = 30.0  # seconds a slow folder is written from the writer thread before trying again


def payload_key(event: AuditEvent) -> str:
    """``logs/{yyyy}/{mm}/{dd}/{org_id}/{server_id}/{record_id}.json.gz`` (UTC date of the record)."""
    at = event.created_at  # not strftime: it costs more than the rest of the key
    day = f"{at.year:04d}/{at.month:02d}/{at.day:02d}"
    return f"logs/{day}/{event.org_id or '_'}/{event.server_id or '_'}/{event.id}.json.gz"


class ResponseTap:
    """An ASGI ``send`` that keeps a copy of the response body, up to ``cap`` bytes."""

    __slots__ = ("_cap", "_send", "chunks", "content_type", "size")

    def __init__(self, send: Send, cap: int) -> None:
        self._send = send
        self._cap = cap
        self.chunks: list[bytes] = []
        self.size = 0
        self.content_type: str | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body:
                self.size += len(body)
                if self.size <= self._cap:
                    self.chunks.append(body)
        elif message["type"] == "http.response.start":
            for name, value in message.get("headers", ()):
                if name == b"content-type":
                    self.content_type = value.decode("latin-1")
        await self._send(message)


@dataclass(frozen=True, slots=True)
class Captured:
    """The bodies of one call, as bytes; nothing parsed yet."""

    request: bytes
    response: bytes
    response_size: int
    response_type: str | None = None

    @classmethod
    def of(cls, request: bytes, tap: ResponseTap) -> Captured:
        """What ``tap`` saw of the response, with the request body."""
        return cls(request, b"".join(tap.chunks), tap.size, tap.content_type)


def _body(data: bytes, size: int, content_type: str | None, cap: int) -> Any:
    if size > cap:
        return {"truncated": True, "bytes": size}
    if not data:
        return None
    if content_type is not None and content_type.startswith("text/event-stream"):
        events: list[Any] = []
        for block in data.decode("utf-8", "replace").split("\n\n"):
            lines = [line[5:].lstrip() for line in block.split("\n") if line.startswith("data:")]
            if lines:
                text = "\n".join(lines)
                try:
                    events.append(orjson.loads(text))
                except orjson.JSONDecodeError:
                    events.append(text)
        return {"events": events}
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return {"text": data.decode("utf-8", "replace")}


def _raw_body(data: bytes, size: int, content_type: str | None, cap: int) -> bytes | None:
    """The body as it goes into the document without being parsed again, or None when it must be.

    A JSON body is spliced in as the bytes it arrived as, once orjson has checked it is JSON;
    a truncated or empty one becomes its stub. Event streams and anything else take the full path.
    """
    if size > cap:
        return b'{"truncated":true,"bytes":%d}' % size
    if not data:
        return b"null"
    if content_type is not None and content_type.startswith("text/event-stream"):
        return None
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return data


def encode_payload(event: AuditEvent, captured: Captured, *, cap: int) -> bytes:
    """The stored document: record id, method, tool, both bodies (redacted, each capped), gzip JSON."""
    head = {
        "record_id": event.id,
        "created_at": event.created_at.isoformat(),
        "method": event.method,
        "tool": event.tool_name,
    }
    # Most calls carry no field named like a secret: the bodies go in as they are, and only the
    # credential patterns run over the text (redact_serialized says when that is not enough).
    request = _raw_body(captured.request, len(captured.request), "application/json", cap)
    response = _raw_body(captured.response, captured.response_size, captured.response_type, cap)
    if request is not None and response is not None:
        spliced = b"".join((orjson.dumps(head)[:-1], b',"request":', request, b',"response":', response, b"}"))
        redacted = redact_serialized(spliced)
        if redacted is not None:
            return _gzip(redacted)
    document = {
        **head,
        "request": _body(captured.request, len(captured.request), "application/json", cap),
        "response": _body(captured.response, captured.response_size, captured.response_type, cap),
    }
    return _gzip(redact_json(document))


_SMALL_DOCUMENT = 4096 - 64  # stored blocks add up to ~30 bytes: the member still fits one 4 KiB block


def _gzip(data: bytes) -> bytes:
    """A gzip member: stored blocks (level 0) for a document that fits one 4 KiB block, level 1 above.

    zlib allocates and clears its window and hash table for every stream, so for a document of
    a few hundred bytes setting up the compression costs more than the compression itself, and
    a member that fits one file-system block takes that block compressed or not. Stored: 1.1 µs
    for a 479-byte document, against 5.8 µs at level 1 with a 512-byte window and memLevel 4, and
    165 k instructions at ``gzip.compress``'s level 6 (decisions 0008, 0019). It is gzip all the
    same, and every reader takes it.
    """
    if len(data) < _SMALL_DOCUMENT:
        compressor = zlib.compressobj(0, zlib.DEFLATED, 16 + 9, 1)
    else:
        compressor = zlib.compressobj(1, zlib.DEFLATED, 16 + 15, 8)
    return compressor.compress(data) + compressor.flush()


def decode_payload(data: bytes) -> Any:
    """The JSON document of a stored payload."""
    return orjson.loads(gzip.decompress(data))


class PayloadWriter:
    """Stores payloads in the background, a batch at a time, then hands each record to the audit writer.

    Whatever is queued when the worker wakes (after lingering once for a fuller batch) is encoded
    and stored together: for the local folder, encoding and writing happen on the event loop a
    few payloads at a time, or in the store's writer thread while the folder is slow
    (``_put_local``); for S3, the PUTs go out concurrently. The queue is bounded: when it is
    full, ``submit`` waits (backpressure), as the audit writer does, so a slow object store slows
    callers down instead of losing records.
    """

    def __init__(
        self,
        store: ObjectStore,
        audit: AuditWriter,
        *,
        cap: int,
        max_queue: int = 2_000,
        batch_size: int = 64,
        linger: float = 0.02,
    ) -> None:
        self.store = store
        self._audit = audit
        self._cap = cap
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._linger = linger
        # A deque and two signals: an asyncio.Queue costs a future per get, and lingering on it
        # item by item a timer per payload.
        self._queue: deque[tuple[AuditEvent, Captured]] = deque()
        self._queued = Signal()
        self._room = Signal()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._thread_until = 0.0  # loop time until which local payloads go to the writer thread
        self._slow_chunks = 0
        self.stored = 0
        self.failed = 0

    @property
    def depth(self) -> int:
        """Payloads waiting to be stored."""
        return len(self._queue)

    async def start(self) -> None:
        """Start the background task."""
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="patchbay-payload-writer")

    async def submit(self, event: AuditEvent, captured: Captured) -> None:
        """Queue one call's bodies; its audit record follows once they are stored (or failed)."""
        while True:
            if self._task is None or self._task.done() or self._closing:
                # Not running (or stopping): the record matters more than its payload.
                await self._audit.submit(event)
                return
            if len(self._queue) < self._max_queue:
                self._queue.append((event, captured))
                self._queued.fire()
                return
            await self._room.wait()

    async def aclose(self) -> None:
        """Store everything queued, pass the records on, then stop."""
        task, self._task = self._task, None
        if task is None:
            return
        self._closing = True
        self._queued.fire()
        try:
            await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._room.fire()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                if self._closing:
                    return
                await self._queued.wait()
            if len(queue) < self._batch_size and not self._closing:
                # Linger once for a fuller batch: a batch costs one thread hop, whatever its size.
                await asyncio.sleep(self._linger)
            batch = [queue.popleft() for _ in range(min(self._batch_size, len(queue)))]
            self._room.fire()
            await self._store(batch)

    async def _store(self, batch: list[tuple[AuditEvent, Captured]]) -> None:
        keys = [payload_key(event) for event, _ in batch]
        results: list[Exception | None]
        store = self.store
        try:
            if isinstance(store, LocalObjectStore):
                results = await self._put_local(store, batch, keys)
            else:
                size = sum(len(c.request) + len(c.response) for _, c in batch)
                if size > _COMPRESS_IN_THREAD:
                    blobs = await anyio.to_thread.run_sync(self._encode_all, batch)
                else:
                    blobs = self._encode_all(batch)
                results = await store.put_many(list(zip(keys, blobs, strict=True)), content_type="application/gzip")
        except Exception as exc:  # noqa: BLE001 - the task's top level: a lost payload must not lose the record
            results = [exc] * len(batch)
        now = utcnow()
        audit = self._audit
        for (event, _), key, error in zip(batch, keys, results, strict=True):
            if error is None:
                self.stored += 1
                event = event._replace(payload_key=key, payload_stored_at=now)
            else:
                self.failed += 1
                logger.warning("could not store the payload of audit record %s: %s", event.id, redact_text(str(error)))
            if not audit.submit_nowait(event):
                await audit.submit(event)

    async def _put_local(
        self, store: LocalObjectStore, batch: list[tuple[AuditEvent, Captured]], keys: list[str]
    ) -> list[Exception | None]:
        """Encode and write on the event loop, a few payloads at a time, while that stays quick.

        A writer thread releases the GIL at every os call and zlib run, against an event loop that
        takes it back each time: the hand-overs cost more CPU than the writing (decision 0015). But
        a slow folder (network storage, a filesystem under pressure) must not stall the loop: after
        ``_SLOW_CHUNKS`` chunks in a row took longer than ``_SLOW_WRITE`` per payload, the rest (and
        every batch for ``_THREAD_SPELL`` seconds) goes to the store's writer thread, as do large bodies.
        """
        loop = asyncio.get_running_loop()
        results: list[Exception | None] = []
        for start in range(0, len(batch), _INLINE_CHUNK):
            chunk = batch[start : start + _INLINE_CHUNK]
            chunk_keys = keys[start : start + _INLINE_CHUNK]
            size = sum(len(c.request) + len(c.response) for _, c in chunk)
            if loop.time() < self._thread_until or size > _COMPRESS_IN_THREAD:
                results += await store.in_thread(self._encode_and_put, store, chunk, chunk_keys)
                continue
            began = loop.time()
            results += self._encode_and_put(store, chunk, chunk_keys)
            # Several slow chunks in a row: one alone may be the scheduler preempting us.
            self._slow_chunks = self._slow_chunks + 1 if loop.time() - began > _SLOW_WRITE * len(chunk) else 0
            if self._slow_chunks >= _SLOW_CHUNKS:
                self._slow_chunks = 0
                self._thread_until = loop.time() + _THREAD_SPELL
                logger.info("payload files are slow to write: writing them in a thread for %g s", _THREAD_SPELL)
            await asyncio.sleep(0)  # let requests in between chunks
        return results

    def _encode_all(self, batch: list[tuple[AuditEvent, Captured]]) -> list[bytes]:
        return [encode_payload(event, captured, cap=self._cap) for event, captured in batch]

    def _encode_and_put(
        self, store: LocalObjectStore, batch: list[tuple[AuditEvent, Captured]], keys: list[str]
    ) -> list[Exception | None]:
        return store.put_many_sync(list(zip(keys, self._encode_all(batch), strict=True)))
