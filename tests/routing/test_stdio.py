"""Stdio upstreams: calls, both eras, multiplexing, crashes, hangs, garbage and process hygiene."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace

import anyio
import psutil  # type: ignore[import-untyped]
import pytest

from patchbay.errors import UpstreamError, UpstreamTimeout
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.routing.upstream.stdio import StdioConnection
from tests.fixtures.servers import stdio_command
from tests.routing.conftest import (
    TIME_COMMAND,
    RecordingSink,
    call,
    garbage_spec,
    stdio_spec,
    text_of,
    tiny_spec,
    wait_until,
)

pytestmark = pytest.mark.anyio


def _gone(pid: int) -> bool:
    """True once ``pid`` no longer runs (a zombie left to a non-reaping init counts as gone)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


async def test_tool_call_returns_the_result_unchanged(pool: UpstreamPool) -> None:
    response = await pool.request(stdio_spec(), "tools/call", call("add", a=2, b=3), timeout=10)
    assert response["result"]["structuredContent"] == {"result": 5}
    assert response["result"]["isError"] is False
    assert "error" not in response


async def test_mcp_server_time_answers_over_stdio(pool: UpstreamPool) -> None:
    spec = stdio_spec("time", command=TIME_COMMAND)
    response = await pool.request(spec, "tools/call", call("get_current_time", timezone="UTC"), timeout=20)
    assert '"timezone": "UTC"' in text_of(response)


async def test_modern_era_is_negotiated_by_default(pool: UpstreamPool) -> None:
    conn = await pool.connection(stdio_spec())
    assert conn.protocol_version == "2026-07-28"
    assert conn.server_info["name"] == "fixture"
    assert "tools" in conn.capabilities
    assert conn.instructions == "Fixture upstream for Patchbay tests."


async def test_legacy_only_server_falls_back_to_initialize(pool: UpstreamPool) -> None:
    spec = stdio_spec("legacy", "--era", "legacy")
    response = await pool.request(spec, "tools/call", call("echo", text="old"), timeout=10)
    assert text_of(response) == "old"
    assert (await pool.connection(spec)).protocol_version == "2025-11-25"


async def test_spec_can_force_the_legacy_era(pool: UpstreamPool) -> None:
    spec = stdio_spec("forced", era="legacy")
    response = await pool.request(spec, "tools/call", call("echo", text="forced"), timeout=10)
    assert text_of(response) == "forced"
    assert (await pool.connection(spec)).protocol_version == "2025-11-25"


async def test_a_downstream_modern_envelope_is_not_forwarded_to_a_legacy_upstream(pool: UpstreamPool) -> None:
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {**call("echo", text="stripped"), "_meta": meta}
    response = await pool.request(stdio_spec("legacy", era="legacy"), "tools/call", params, timeout=10)
    assert text_of(response) == "stripped"
    assert params["_meta"] is meta  # the caller's params are left alone


async def test_concurrent_calls_are_multiplexed_on_one_process(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    await pool.request(spec, "tools/call", call("echo", text="warm"), timeout=10)
    answers: dict[int, str] = {}

    async def one(index: int) -> None:
        answers[index] = text_of(await pool.request(spec, "tools/call", call("echo", text=f"n{index}"), timeout=10))

    async def slow() -> None:
        await pool.request(spec, "tools/call", call("slow", seconds=0.5), timeout=10)

    with anyio.fail_after(1.4):  # five half-second calls run side by side, not one after another
        async with anyio.create_task_group() as tg:
            for index in range(30):
                tg.start_soon(one, index)
            for _ in range(5):
                tg.start_soon(slow)
    assert answers == {index: f"n{index}" for index in range(30)}
    assert pool.stats()["stdio_processes"] == 1


async def test_crash_mid_call_fails_fast_and_the_next_call_restarts(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    first = await pool.connection(spec)
    with anyio.fail_after(5), pytest.raises(UpstreamError, match=r"upstream 'fixture' exited with code 3"):
        await pool.request(spec, "tools/call", call("crash"), timeout=30)
    response = await pool.request(spec, "tools/call", call("echo", text="back"), timeout=10)
    assert text_of(response) == "back"
    assert await pool.connection(spec) is not first


async def test_a_crash_fails_every_in_flight_request_at_once(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    await pool.connection(spec)
    errors: list[UpstreamError] = []

    async def hanging() -> None:
        try:
            await pool.request(spec, "tools/call", call("slow", seconds=60), timeout=60)
        except UpstreamError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(hanging)
            with pytest.raises(UpstreamError):
                await pool.request(spec, "tools/call", call("crash"), timeout=60)
    assert len(errors) == 3
    assert all("exited with code 3" in str(exc) for exc in errors)


async def test_a_hanging_call_times_out_and_the_upstream_stays_usable(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    # Spawn first: the bound below is about the timeout, not about how fast Python starts on a busy machine.
    await pool.connection(spec)
    with anyio.fail_after(3), pytest.raises(UpstreamTimeout) as info:
        await pool.request(spec, "tools/call", call("slow", seconds=30), timeout=0.3)
    assert str(info.value) == "upstream 'fixture' did not answer tools/call within 0.3 s"
    assert text_of(await pool.request(spec, "tools/call", call("echo", text="alive"), timeout=10)) == "alive"


@pytest.mark.parametrize(
    ("mode", "error", "message"),
    [
        ("no-result", UpstreamError, r"upstream 'garbage' answered without result or error"),
        ("array", UpstreamError, r"upstream 'garbage' answered with a JSON array"),
        ("noise", UpstreamTimeout, r"within 0.5 s \(it wrote non-JSON to stdout: 'this is not JSON'\)"),
        ("wrong-id", UpstreamTimeout, r"within 0.5 s \(it answered an unknown request id 'not-\d+'\)"),
    ],
)
async def test_garbage_output_gives_a_clear_error(
    pool: UpstreamPool, mode: str, error: type[UpstreamError], message: str
) -> None:
    with anyio.fail_after(5), pytest.raises(error, match=message):
        await pool.request(garbage_spec(mode), "tools/call", call("echo", text="x"), timeout=0.5)


async def test_progress_notifications_reach_their_own_sink(pool: UpstreamPool) -> None:
    spec = stdio_spec()
    sinks = [RecordingSink(), RecordingSink()]

    async def run(sink: RecordingSink, steps: int) -> None:
        # Both clients picked the same token: the gateway must keep them apart.
        params = {**call("progress", steps=steps), "_meta": {"progressToken": "same"}}
        await pool.request(spec, "tools/call", params, timeout=10, sink=sink)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, sinks[0], 2)
        tg.start_soon(run, sinks[1], 3)
    for sink, steps in zip(sinks, (2, 3), strict=True):
        assert [n["params"]["progress"] for n in sink.notifications] == list(range(1, steps + 1))
        assert {n["params"]["progressToken"] for n in sink.notifications} == {"same"}
        assert {n["params"]["total"] for n in sink.notifications} == {steps}


@pytest.mark.parametrize("tool", ["sample", "roots"])
async def test_server_requests_reach_the_sink_and_its_answer_gets_back(pool: UpstreamPool, tool: str) -> None:
    sink = RecordingSink(answer="hello from the client")
    spec = stdio_spec("legacy", era="legacy")
    arguments = {"prompt": "hi"} if tool == "sample" else {}
    response = await pool.request(spec, "tools/call", call(tool, **arguments), timeout=10, sink=sink)
    expected = "hello from the client" if tool == "sample" else '["file:///work"]'
    assert text_of(response) == expected
    assert [r["method"] for r in sink.requests] == ["sampling/createMessage" if tool == "sample" else "roots/list"]


async def test_a_server_request_without_a_client_is_refused_not_hung(pool: UpstreamPool) -> None:
    spec = stdio_spec("legacy", era="legacy")
    with anyio.fail_after(5):
        response = await pool.request(spec, "tools/call", call("sample", prompt="hi"), timeout=5)
    assert response["error"] == {
        "code": -32601,
        "message": "gateway cannot tell which client sampling/createMessage is for",
    }


async def test_modern_input_required_results_pass_through_unchanged(pool: UpstreamPool) -> None:
    response = await pool.request(stdio_spec(), "tools/call", call("sample", prompt="hi"), timeout=10)
    assert response["result"]["resultType"] == "input_required"
    assert response["result"]["inputRequests"]["sample"]["method"] == "sampling/createMessage"


async def test_unsolicited_notifications_reach_the_pool_handler(pool: UpstreamPool) -> None:
    got: list[tuple[str, str, dict[str, object]]] = []
    arrived = anyio.Event()

    async def handler(key: str, method: str, params: dict[str, object]) -> None:
        got.append((key, method, params))
        arrived.set()

    pool.on_notification(handler)
    spec = stdio_spec("legacy", era="legacy")
    await pool.request(spec, "resources/subscribe", {"uri": "fixture://items/1"}, timeout=10)
    await pool.request(spec, "tools/call", call("touch", uri="fixture://items/1"), timeout=10)
    with anyio.fail_after(5):
        await arrived.wait()
    assert got == [("legacy", "notifications/resources/updated", {"uri": "fixture://items/1"})]


async def test_close_ends_the_whole_process_group() -> None:
    # A shell that leaves a grandchild behind which ignores SIGTERM, as wrapper scripts do.
    script = 'trap "" TERM; sleep 300 & exec "$@"'
    command = ("sh", "-c", script, "sh", *stdio_command())
    conn = await StdioConnection.open(stdio_spec(command=command), connect_timeout=20, kill_grace=0.5)
    assert conn.pid is not None
    family = [conn.pid, *(child.pid for child in psutil.Process(conn.pid).children(recursive=True))]
    assert len(family) >= 2
    with anyio.fail_after(5):
        await conn.aclose()
    assert conn.closed
    # SIGKILL is sent by now; the kernel may take a moment to deliver it to a sleeping process.
    await wait_until(lambda: all(_gone(pid) for pid in family), seconds=5)
    assert not psutil.pid_exists(conn.pid)  # reaped by us, not left a zombie


async def test_stderr_lines_are_logged_even_when_not_utf8(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="patchbay.upstream.fixture")
    command = ("sh", "-c", r'printf "bad \377 bytes\n" >&2; exec "$@"', "sh", *stdio_command())
    conn = await StdioConnection.open(stdio_spec(command=command), connect_timeout=20)
    try:
        await conn.request("tools/call", call("echo", text="x"), timeout=10)
    finally:
        await conn.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == "patchbay.upstream.fixture"]
    assert "bad \ufffd bytes" in lines


async def test_environment_is_minimal_plus_the_spec_env() -> None:
    os.environ["PATCHBAY_TEST_SECRET"] = "leak"
    try:
        probe = "import os, sys; print(sorted(os.environ), file=sys.stderr); sys.exit(1)"
        spec = replace(stdio_spec(command=(sys.executable, "-c", probe)), env={"FIXTURE_TOKEN": "t0k"})
        with pytest.raises(UpstreamError) as info:
            await StdioConnection.open(spec, connect_timeout=10)
    finally:
        del os.environ["PATCHBAY_TEST_SECRET"]
    assert "FIXTURE_TOKEN" in str(info.value)
    assert "PATCHBAY_TEST_SECRET" not in str(info.value)
    assert "PATH" in str(info.value)


async def test_an_upstream_ping_is_answered_by_the_gateway(pool: UpstreamPool) -> None:
    with anyio.fail_after(5):
        response = await pool.request(tiny_spec(), "tools/call", call("ping"), timeout=5)
    assert text_of(response) == "{}"


async def test_era_modern_refuses_a_legacy_only_server(pool: UpstreamPool) -> None:
    spec = replace(tiny_spec(), era="modern")
    with pytest.raises(UpstreamError, match=r"does not speak the 2026-07-28 protocol: Method not found \(-32601\)"):
        await pool.request(spec, "tools/list", None, timeout=5)
