"""SEP-1699 upstreams: an upstream that closes its response stream mid-call is resumed with Last-Event-ID."""

from __future__ import annotations

import sys

import pytest

from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.routing.upstream.pool import UpstreamPool
from tests.fixtures.servers import spawn_ready
from tests.routing.conftest import RecordingSink, call, text_of

pytestmark = pytest.mark.anyio

CONFORMANCE = [
    sys.executable,
    "-m",
    "tests.fixtures.conformance_server",
    "--transport",
    "streamable-http",
    "--port",
    "0",
]


async def test_a_call_whose_stream_the_upstream_closes_still_gets_its_result(pool: UpstreamPool) -> None:
    async with spawn_ready(CONFORMANCE) as fixture:
        spec = UpstreamSpec(key="polling", name="polling", transport="streamable_http", url=fixture.url, era="legacy")
        sink = RecordingSink()
        response = await pool.request(spec, "tools/call", call("test_reconnection"), timeout=10, sink=sink)
    assert text_of(response) == "Reconnection test completed"
    # The downstream side is told, so it can mirror the upstream's stream and its poll.
    assert sink.stream_states[:2] == ["open", "paused"]
