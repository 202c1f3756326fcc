"""OpenTelemetry: spans only when an OTLP endpoint is set, and the trace context reaches HTTP upstreams."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from patchbay.audit.tracing import traces_url
from patchbay.errors import InvalidInput
from patchbay.settings import Settings
from tests.fixtures.servers import running_fixture
from tests.harness import Upstream, add_upstreams, free_port, make_key, make_server, modern_tool_call, running_gateway

pytestmark = pytest.mark.anyio

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_TRACEPARENT = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


class Collector:
    """A minimal OTLP/HTTP receiver on loopback: decodes every export it is sent."""

    def __init__(self) -> None:
        self.spans: list[dict[str, object]] = []
        self.arrived = asyncio.Event()

    async def receive(self, request: Request) -> Response:
        export = ExportTraceServiceRequest()
        export.ParseFromString(await request.body())
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value.string_value or a.value.int_value for a in span.attributes}
                    self.spans.append({"name": span.name, "trace_id": span.trace_id.hex(), "attributes": attributes})
        self.arrived.set()
        return Response(b"", media_type="application/x-protobuf")


@asynccontextmanager
async def running_collector() -> AsyncIterator[tuple[str, Collector]]:
    collector = Collector()
    app = Starlette(routes=[Route("/v1/traces", collector.receive, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", collector
    finally:
        server.should_exit = True
        await task


async def _whoami(settings: Settings, key: str) -> dict[str, str]:
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        call = modern_tool_call(key, "web__whoami", {})
        call["headers"]["traceparent"] = CALLER_TRACEPARENT  # type: ignore[index]
        call["headers"]["X-Request-Id"] = "trace-test-request-1"  # type: ignore[index]
        answer = await http.post("/mcp", **call)  # type: ignore[arg-type]
    headers: dict[str, str] = json.loads(answer.json()["result"]["content"][0]["text"])["headers"]
    return headers


async def test_with_an_otlp_endpoint_each_request_is_a_span_and_http_upstreams_join_the_trace(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with running_fixture("streamable-http") as upstream_url, running_collector() as (endpoint, collector):
        await add_upstreams(sessionmaker, settings, [Upstream(name="web", url=upstream_url)])
        await make_server(sessionmaker, name="main", upstreams=["web"])
        key = await make_key(sessionmaker, settings, server="main")
        seen = await _whoami(settings.model_copy(update={"otlp_endpoint": endpoint}), key)
        # Leaving the gateway shuts the tracer down, which exports what is buffered.
        async with asyncio.timeout(10):
            await collector.arrived.wait()
    trace_id = seen["traceparent"].split("-")[1]
    assert trace_id == CALLER_TRACE
    (span,) = [s for s in collector.spans if s["name"] == "mcp tools/call"]
    assert span["trace_id"] == CALLER_TRACE
    attributes = span["attributes"]
    assert isinstance(attributes, dict)
    assert attributes["mcp.tool.name"] == "web__whoami"
    assert attributes["patchbay.request_id"] == "trace-test-request-1"
    assert key[12:] not in json.dumps(collector.spans)


async def test_without_an_otlp_endpoint_nothing_is_traced_and_upstream_requests_are_unchanged(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    async with running_fixture("streamable-http") as upstream_url:
        await add_upstreams(sessionmaker, settings, [Upstream(name="web", url=upstream_url)])
        await make_server(sessionmaker, name="main", upstreams=["web"])
        key = await make_key(sessionmaker, settings, server="main")
        seen = await _whoami(settings, key)
    assert "traceparent" not in seen


def test_the_otlp_endpoint_is_checked() -> None:
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://c.example/v1/traces") == "https://c.example/v1/traces"
    with pytest.raises(InvalidInput):
        traces_url("collector:4318")
