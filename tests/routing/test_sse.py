"""Legacy HTTP+SSE upstreams: answers on the event stream, messages posted to the announced endpoint."""

from __future__ import annotations

import json

import anyio
import pytest

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.routing.upstream.base import Era, UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool
from tests.fixtures.servers import fixture_process
from tests.routing.conftest import RecordingSink, call, text_of

pytestmark = pytest.mark.anyio


def sse_spec(url: str, key: str = "sse", *, era: Era = "auto") -> UpstreamSpec:
    return UpstreamSpec(key=key, name="fixture", transport="sse", url=url, era=era, headers={"X-Api-Key": "k-sse"})


@pytest.mark.parametrize(("era", "version"), [("auto", "2026-07-28"), ("legacy", "2025-11-25")])
async def test_tool_call_over_sse_in_both_eras(pool: UpstreamPool, sse_url: str, era: Era, version: str) -> None:
    spec = sse_spec(sse_url, era, era=era)
    response = await pool.request(spec, "tools/call", call("whoami"), timeout=10)
    assert json.loads(text_of(response))["headers"]["x-api-key"] == "k-sse"
    assert (await pool.connection(spec)).protocol_version == version


async def test_concurrent_calls_over_one_event_stream(pool: UpstreamPool, sse_url: str) -> None:
    spec = sse_spec(sse_url)
    results: dict[int, str] = {}

    async def one(index: int) -> None:
        results[index] = text_of(await pool.request(spec, "tools/call", call("echo", text=str(index)), timeout=10))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for index in range(20):
                tg.start_soon(one, index)
    assert results == {index: str(index) for index in range(20)}


async def test_progress_and_sampling_reach_the_sink(pool: UpstreamPool, sse_url: str) -> None:
    spec = sse_spec(sse_url, "legacy", era="legacy")
    sink = RecordingSink(answer="via sse")
    params = {**call("progress", steps=2), "_meta": {"progressToken": "p"}}
    await pool.request(spec, "tools/call", params, timeout=10, sink=sink)
    assert [n["params"]["progress"] for n in sink.notifications] == [1, 2]
    response = await pool.request(spec, "tools/call", call("sample", prompt="q"), timeout=10, sink=sink)
    assert text_of(response) == "via sse"


async def test_a_hanging_call_times_out(pool: UpstreamPool, sse_url: str) -> None:
    spec = sse_spec(sse_url)
    with (
        anyio.fail_after(3),
        pytest.raises(UpstreamTimeout, match=r"did not answer tools/call within 0\.2 s"),
    ):
        await pool.request(spec, "tools/call", call("slow", seconds=30), timeout=0.2)
    assert text_of(await pool.request(spec, "tools/call", call("echo", text="still"), timeout=10)) == "still"


async def test_a_dying_server_fails_in_flight_calls_at_once(pool: UpstreamPool) -> None:
    errors: list[UpstreamError] = []

    async def attempt(spec: UpstreamSpec, params: dict[str, object]) -> None:
        try:
            await pool.request(spec, "tools/call", params, timeout=60)
        except UpstreamError as exc:
            errors.append(exc)

    async with fixture_process("sse") as server:
        spec = sse_spec(server.url, "dying")
        await pool.connection(spec)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(attempt, spec, call("slow", seconds=60))
                tg.start_soon(attempt, spec, call("crash"))
    assert [str(exc) for exc in errors] == ["upstream 'fixture' closed its event stream"] * 2
