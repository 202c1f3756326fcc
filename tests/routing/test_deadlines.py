"""One timer for the deadlines of many calls: each call is still cancelled at its own deadline."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.routing.upstream.deadlines import Deadlines

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param({}, id="asyncio"), pytest.param({"use_uvloop": True}, id="uvloop")])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, bool]]:
    return ("asyncio", request.param)


async def _call(deadlines: Deadlines, key: int, seconds: float, log: list[tuple[int, bool]]) -> None:
    task = asyncio.current_task()
    assert task is not None
    deadlines.start(key, task, seconds)
    try:
        await asyncio.sleep(5)
    except asyncio.CancelledError:
        log.append((key, deadlines.expired(key)))
        raise
    finally:
        deadlines.stop(key)


async def test_a_shorter_deadline_started_later_fires_first() -> None:
    deadlines, log = Deadlines(), []
    slow = asyncio.ensure_future(_call(deadlines, 1, 0.4, log))
    await asyncio.sleep(0.01)
    fast = asyncio.ensure_future(_call(deadlines, 2, 0.05, log))
    await asyncio.wait({fast})
    assert log == [(2, True)]
    assert not slow.done()
    await asyncio.wait({slow}, timeout=2)
    assert log == [(2, True), (1, True)]


async def test_a_call_that_ends_in_time_is_not_cancelled_and_others_still_are() -> None:
    deadlines, log = Deadlines(), []
    task = asyncio.current_task()
    assert task is not None
    deadlines.start(1, task, 0.05)
    deadlines.stop(1)
    later = asyncio.ensure_future(_call(deadlines, 2, 0.1, log))
    await asyncio.sleep(0.2)  # past both deadlines: this task was not cancelled
    await asyncio.wait({later}, timeout=2)
    assert log == [(2, True)]


async def test_a_cancellation_from_elsewhere_is_not_taken_for_the_deadline() -> None:
    deadlines, log = Deadlines(), []
    call = asyncio.ensure_future(_call(deadlines, 1, 5.0, log))
    await asyncio.sleep(0.01)
    call.cancel()
    await asyncio.wait({call})
    assert log == [(1, False)]
    deadlines.close()
