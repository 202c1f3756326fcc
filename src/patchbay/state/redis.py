"""The Redis shared store: state that every gateway replica sees, and pub/sub between them."""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from patchbay.errors import StoreUnavailable
from patchbay.state.memory import check_bucket, check_ttl

logger = logging.getLogger(__name__)

T = TypeVar("T")
_Sink = MemoryObjectSendStream[tuple[str, bytes]]

# What "Redis is not there" looks like from redis-py: refused, reset, closed or silent sockets.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)

# INCR and a first-time PEXPIRE in one step, so a crash in between cannot leave a counter
# that never expires.
_INCR_WITH_TTL = """
local value = redis.call('INCR', KEYS[1])
if value == 1 and ARGV[1] ~= '' then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return value
"""


# A token bucket in one hash {tokens, ts}, timed by the Redis server's clock so that every
# replica draws from the same bucket at the same rate. Numbers travel as strings: a Lua
# number returned to Redis would be truncated to an integer.
_TAKE_TOKEN = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
    tokens = capacity
    ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
    tokens = tokens - 1
else
    wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return tostring(wait)
"""


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class _Subscription:
    """The pubsub connection currently serving one ``subscribe`` block; replaced on reconnect."""

    __slots__ = ("channels", "pubsub", "scope")

    def __init__(self, channels: tuple[str, ...], pubsub: PubSub) -> None:
        self.channels = channels
        self.pubsub: PubSub | None = pubsub
        self.scope = anyio.CancelScope()

    async def close_pubsub(self) -> None:
        pubsub, self.pubsub = self.pubsub, None
        if pubsub is not None:
            await _close_quietly(pubsub)


class RedisStore:
    """A ``SharedStore`` on Redis; every key and channel lives under ``prefix``.

    Commands are never retried by redis-py (a retried INCR could count twice) and every socket
    has a timeout, so a missing or silent Redis surfaces as ``StoreUnavailable`` within about
    ``socket_timeout`` seconds instead of hanging. Subscriptions reconnect on their own with
    capped exponential backoff; messages published while they are disconnected are lost, as
    with any Redis pub/sub.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "patchbay:",
        socket_timeout: float = 2.0,
        connect_timeout: float = 2.0,
        health_check_interval: float = 15.0,
        reconnect_initial: float = 0.05,
        reconnect_max: float = 5.0,
        subscriber_buffer: int = 10_000,
    ) -> None:
        self._redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
        )
        self._prefix = prefix
        self._socket_timeout = socket_timeout
        self._health_check_interval = health_check_interval
        self._reconnect_initial = reconnect_initial
        self._reconnect_max = reconnect_max
        self._subscriber_buffer = subscriber_buffer
        self._incr_script = self._redis.register_script(_INCR_WITH_TTL)
        self._bucket_script = self._redis.register_script(_TAKE_TOKEN)
        self._subscriptions: set[_Subscription] = set()
        self._closed = False

    @property
    def prefix(self) -> str:
        """The namespace of every key and channel this store touches."""
        return self._prefix

    # --- keys ------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        """The value of ``key``, or None when it is absent or expired."""
        value = await self._call(lambda: self._redis.get(self._key(key)))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        """Store ``value``, replacing any previous value and TTL."""
        check_ttl(ttl)
        await self._call(lambda: self._redis.set(self._key(key), value, px=None if ttl is None else _ms(ttl)))

    async def set_if_absent(self, key: str, value: bytes, *, ttl: float | None = None) -> bool:
        """Set only when the key is absent; True when this call set it."""
        check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        return bool(await self._call(lambda: self._redis.set(self._key(key), value, px=px, nx=True)))

    async def delete(self, key: str) -> None:
        """Remove ``key``; absent keys are fine."""
        await self._call(lambda: self._redis.delete(self._key(key)))

    async def expire(self, key: str, ttl: float) -> bool:
        """Renew a key's TTL; False when the key is gone."""
        check_ttl(ttl)
        return bool(await self._call(lambda: self._redis.pexpire(self._key(key), _ms(ttl))))

    async def incr(self, key: str, *, ttl: float | None = None) -> int:
        """Atomically add one and return the new value; the TTL is set when the key is created."""
        check_ttl(ttl)
        args = ["" if ttl is None else str(_ms(ttl))]
        try:
            result = await self._call(lambda: self._incr_script(keys=[self._key(key)], args=args))
        except ResponseError as exc:
            raise ValueError(f"key {key!r} does not hold an integer") from exc
        return int(result)

    async def take_token(self, key: str, *, rate: float, capacity: float) -> float:
        """Token bucket shared by every replica: 0.0 when a token was taken, else seconds to wait."""
        check_bucket(rate, capacity)
        args = [repr(float(rate)), repr(float(capacity))]
        result = await self._call(lambda: self._bucket_script(keys=[self._key(key)], args=args))
        return float(result)

    # --- pub/sub ---------------------------------------------------------------------------

    async def publish(self, channel: str, message: bytes) -> None:
        """Send ``message`` to every subscriber of ``channel`` in any replica."""
        await self._call(lambda: self._redis.publish(self._key(channel), message))

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        """Yield ``(channel, message)`` for every message published after the subscription is live.

        Entering returns once Redis has confirmed every channel, so a message published after
        that is delivered.
        """
        if not channels:
            raise ValueError("subscribe needs at least one channel")
        names = tuple(self._key(channel) for channel in channels)
        subscription = _Subscription(names, await self._open_pubsub(names))
        self._subscriptions.add(subscription)
        send, receive = anyio.create_memory_object_stream[tuple[str, bytes]](self._subscriber_buffer)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._pump, subscription, send)
                try:
                    with receive:
                        yield receive
                finally:
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The pump handles its own errors, so a group only wraps the subscriber's exception:
            # hand that back as it was raised, as the memory store does.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            self._subscriptions.discard(subscription)
            send.close()
            await subscription.close_pubsub()

    # --- lifecycle -------------------------------------------------------------------------

    async def ping(self) -> bool:
        """True when Redis answers; False when it is unreachable or the store is closed."""
        if self._closed:
            return False
        try:
            return bool(await self._redis.ping())
        except _UNAVAILABLE:
            return False

    async def aclose(self) -> None:
        """End every open subscription and close the connection pool."""
        self._closed = True
        for subscription in self._subscriptions:
            subscription.scope.cancel()
        await self._redis.aclose()

    # --- internals -------------------------------------------------------------------------

    def _key(self, name: str) -> str:
        return self._prefix + name

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        if self._closed:
            raise StoreUnavailable("the shared store is closed")
        try:
            return await operation()
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc

    async def _open_pubsub(self, names: tuple[str, ...]) -> PubSub:
        """A pubsub connection subscribed to ``names``, returned once Redis confirmed each one."""
        if self._closed:
            raise StoreUnavailable("the shared store is closed")
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(*names)
            pending = {name.encode() for name in names}
            deadline = anyio.current_time() + self._socket_timeout
            while pending:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    raise StoreUnavailable("Redis did not confirm the subscription in time")
                message = await pubsub.get_message(timeout=remaining)
                # Redis answers SUBSCRIBE for all channels before it can deliver any message.
                if message is not None and message["type"] == "subscribe":
                    pending.discard(message["channel"])
        except _UNAVAILABLE as exc:
            await _close_quietly(pubsub)
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc
        except BaseException:
            await _close_quietly(pubsub)
            raise
        return pubsub

    async def _pump(self, subscription: _Subscription, send: _Sink) -> None:
        """Forward messages to the subscriber, reconnecting whenever the connection is lost."""
        with send, subscription.scope:
            delay = self._reconnect_initial
            while True:
                if subscription.pubsub is None:
                    try:
                        subscription.pubsub = await self._open_pubsub(subscription.channels)
                    except StoreUnavailable as exc:
                        logger.warning("Redis resubscribe failed (%s); retry in %.2fs", exc, delay)
                        await anyio.sleep(delay)
                        delay = min(delay * 2, self._reconnect_max)
                        continue
                    logger.info("Redis subscription restored")
                    delay = self._reconnect_initial
                try:
                    await self._forward(subscription.pubsub, send)
                except _UNAVAILABLE as exc:
                    logger.warning("Redis subscription lost (%s); reconnecting", exc)
                    await subscription.close_pubsub()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    async def _forward(self, pubsub: PubSub, send: _Sink) -> None:
        # A silent connection (a network partition rather than a restart) never raises on
        # read, so an idle subscription pings and treats an unanswered ping as a lost connection.
        awaiting_pong = False
        strip = len(self._prefix)
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(timeout=self._health_check_interval)
            if message is None:
                if awaiting_pong:
                    raise RedisTimeoutError("Redis did not answer a health-check ping")
                await pubsub.ping()
                awaiting_pong = True
                continue
            awaiting_pong = False
            if message["type"] == "message":
                channel = message["channel"]
                name = channel.decode() if isinstance(channel, bytes) else str(channel)
                await send.send((name[strip:], bytes(message["data"])))


async def _close_quietly(pubsub: PubSub) -> None:
    with anyio.CancelScope(shield=True):
        try:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        except _UNAVAILABLE:
            logger.debug("closing a Redis pubsub connection failed", exc_info=True)
