"""The whole protocol surface through the gateway, against the fixture upstream over every transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from typing import Any

import anyio
import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.shared.exceptions import MCPError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture, stdio_command
from tests.harness import Upstream, add_upstreams, initialize_request, make_key, make_server, running_gateway

pytestmark = pytest.mark.anyio

MODES = ["legacy", "2026-07-28"]
TRANSPORTS = ["stdio", "streamable-http", "sse"]


async def _fixture_upstream(stack: AsyncExitStack, transport: str, name: str = "fx") -> Upstream:
    if transport == "stdio":
        return Upstream(name=name, command=stdio_command())
    url = await stack.enter_async_context(running_fixture(transport))
    return Upstream(name=name, url=url, transport="sse" if transport == "sse" else "streamable_http")


@pytest.fixture
async def fx_gateway(
    request: pytest.FixtureRequest, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[tuple[str, str]]:
    """A gateway with one server ``main`` over the fixture upstream; yields (base url, key)."""
    transport = getattr(request, "param", "streamable-http")
    settings.upstream_timeout = 3.0
    async with AsyncExitStack() as stack:
        up = await _fixture_upstream(stack, transport)
        await add_upstreams(sessionmaker, settings, [up])
        await make_server(sessionmaker, name="main", upstreams=["fx"])
        key = await make_key(sessionmaker, settings, server="main")
        url = await stack.enter_async_context(running_gateway(settings))
        yield url, key


def _text(result: types.CallToolResult) -> str:
    block = result.content[0]
    assert isinstance(block, types.TextContent)
    return block.text


@pytest.mark.parametrize("fx_gateway", TRANSPORTS, indirect=True)
@pytest.mark.parametrize("mode", MODES)
async def test_tool_results_pass_through_unchanged(fx_gateway: tuple[str, str], mode: str) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode=mode) as client:
        echoed = await client.call_tool("fx__echo", {"text": "héllo"})
        assert _text(echoed) == "héllo"
        added = await client.call_tool("fx__add", {"a": 2, "b": 40})
        assert added.structured_content == {"result": 42}
        failed = await client.call_tool("fx__fail", {})
        assert failed.is_error


@pytest.mark.parametrize("mode", MODES)
async def test_progress_notifications_reach_the_client(fx_gateway: tuple[str, str], mode: str) -> None:
    url, key = fx_gateway
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async with Client(f"{url}/mcp/k/{key}", mode=mode) as client:
        result = await client.call_tool("fx__progress", {"steps": 3}, progress_callback=on_progress)
    assert _text(result) == "done"
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_elicitation_and_roots_are_relayed(fx_gateway: tuple[str, str], mode: str) -> None:
    url, key = fx_gateway

    async def sampling(
        ctx: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text="sampled!"), model="test-model"
        )

    async def elicitation(ctx: ClientRequestContext, params: types.ElicitRequestParams) -> types.ElicitResult:
        return types.ElicitResult(action="accept", content={"answer": "yes"})

    async def roots(ctx: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    async with Client(
        f"{url}/mcp/k/{key}",
        mode=mode,
        sampling_callback=sampling,
        elicitation_callback=elicitation,
        list_roots_callback=roots,
    ) as client:
        assert "sampled!" in _text(await client.call_tool("fx__sample", {"prompt": "hi"}))
        assert "accept" in _text(await client.call_tool("fx__elicit", {"message": "ok?"}))
        assert "file:///work/project" in _text(await client.call_tool("fx__roots", {}))


@pytest.mark.parametrize("mode", MODES)
async def test_resources_prompts_and_completions_are_proxied(fx_gateway: tuple[str, str], mode: str) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode=mode) as client:
        resources = await client.list_resources()
        assert "fixture://static/hello" in {str(r.uri) for r in resources.resources}
        read = await client.read_resource("fixture://static/hello")
        first = read.contents[0]
        assert isinstance(first, types.TextResourceContents) and first.text == "hello"
        templates = await client.list_resource_templates()
        assert templates.resource_templates
        prompts = await client.list_prompts()
        assert [p.name for p in prompts.prompts] == ["fx__greet"]
        prompt = await client.get_prompt("fx__greet", {"name": "Ada"})
        assert prompt.messages
        completion = await client.complete(
            types.PromptReference(type="ref/prompt", name="fx__greet"), {"name": "name", "value": "A"}
        )
        assert "Alice" in completion.completion.values


async def test_capabilities_are_only_what_upstreams_have(fx_gateway: tuple[str, str]) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        caps = client.server_capabilities
    assert caps.tools is not None and caps.prompts is not None and caps.resources is not None
    assert caps.completions is not None and caps.logging is not None


@pytest.mark.parametrize("fx_gateway", ["stdio"], indirect=True)
async def test_stdio_upstream_crash_mid_call_is_an_error_then_it_restarts(
    fx_gateway: tuple[str, str],
) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("fx__crash", {})
        assert "'fx'" in str(crashed.value)
        # The pool restarts the process with a short backoff; calls inside it fail fast and say so.
        with anyio.fail_after(10):
            while True:
                try:
                    result = await client.call_tool("fx__echo", {"text": "again"})
                    break
                except MCPError as exc:
                    assert "'fx'" in str(exc)
                    await anyio.sleep(0.1)
        assert _text(result) == "again"


@pytest.mark.parametrize("fx_gateway", ["streamable-http"], indirect=True)
async def test_http_upstream_that_died_gives_a_clear_error(fx_gateway: tuple[str, str]) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        with pytest.raises(MCPError) as crashed:
            await client.call_tool("fx__crash", {})
        assert "'fx'" in str(crashed.value)
        with pytest.raises(MCPError) as gone:
            await client.call_tool("fx__echo", {"text": "again"})
        assert "'fx'" in str(gone.value)


async def test_hanging_upstream_hits_the_timeout(fx_gateway: tuple[str, str]) -> None:
    url, key = fx_gateway
    async with Client(f"{url}/mcp/k/{key}", mode="legacy") as client:
        with pytest.raises(MCPError) as timed_out:
            await client.call_tool("fx__slow", {"seconds": 30})
        assert "did not answer" in str(timed_out.value) or "timed out" in str(timed_out.value).lower()
        assert _text(await client.call_tool("fx__echo", {"text": "still here"})) == "still here"


@pytest.mark.parametrize("fx_gateway", ["streamable-http", "stdio"], indirect=True)
async def test_resource_updates_reach_subscribed_legacy_clients(fx_gateway: tuple[str, str]) -> None:
    url, key = fx_gateway
    updated = anyio.Event()
    uris: list[str] = []

    async def on_message(message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            uris.append(str(message.params.uri))
            updated.set()

    async with Client(f"{url}/mcp/k/{key}", mode="legacy", message_handler=on_message) as client:
        assert client.server_capabilities.resources is not None
        assert client.server_capabilities.resources.subscribe
        await client.subscribe_resource("fixture://static/hello")
        # The gateway may still be opening its watch on the upstream: touch until the update arrives.
        with anyio.fail_after(10):
            while not updated.is_set():
                await client.call_tool("fx__touch", {"uri": "fixture://static/hello"})
                with anyio.move_on_after(0.5):
                    await updated.wait()
        await client.unsubscribe_resource("fixture://static/hello")
    assert uris[0] == "fixture://static/hello"


@contextmanager
def _handler_tasks() -> Iterator[list[str]]:
    """Record the tasks the running loop makes whose coroutine is a request handler's."""
    loop = asyncio.get_running_loop()
    made: list[str] = []
    before = loop.get_task_factory()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        if getattr(coro, "__qualname__", "") == "tools_call":
            made.append(coro.__qualname__)
        return asyncio.Task(coro, loop=loop, **kwargs)

    loop.set_task_factory(factory)  # type: ignore[arg-type]
    try:
        yield made
    finally:
        loop.set_task_factory(before)


@pytest.mark.parametrize("mode", MODES)
async def test_a_request_nothing_can_park_runs_inline(fx_gateway: tuple[str, str], mode: str) -> None:
    # Only a 2026-07-28 client that can be asked for input (sampling, elicitation or roots) gets
    # its handler a task of its own, which an input_required round can leave parked.
    url, key = fx_gateway

    async def roots(ctx: ClientRequestContext) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri="file:///work/project", name="project")])

    with _handler_tasks() as made:
        async with Client(f"{url}/mcp/k/{key}", mode=mode) as client:
            assert _text(await client.call_tool("fx__echo", {"text": "plain"})) == "plain"
        assert made == []
        async with Client(f"{url}/mcp/k/{key}", mode=mode, list_roots_callback=roots) as client:
            assert _text(await client.call_tool("fx__echo", {"text": "askable"})) == "askable"
            assert made == ([] if mode == "legacy" else ["tools_call"])
            assert "file:///work/project" in _text(await client.call_tool("fx__roots", {}))


async def test_a_legacy_request_with_a_request_state_is_still_served_inline(fx_gateway: tuple[str, str]) -> None:
    # requestState means nothing to a 2025-11-25 session: the request is served like any other.
    url, key = fx_gateway
    auth = {"Authorization": f"Bearer {key}"}
    with _handler_tasks() as made:
        async with httpx.AsyncClient(base_url=url, headers=auth) as http:
            opened = await http.post("/mcp", json=initialize_request())
            session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
            call = {"name": "fx__echo", "arguments": {"text": "still"}, "requestState": "pbc1.elsewhere.token"}
            answer = await http.post(
                "/mcp", json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call}, headers=session
            )
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "still"
    assert made == []
