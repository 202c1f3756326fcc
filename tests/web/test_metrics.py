"""``/metrics``: calls and latencies by server, tool, channel and status, plus the gateway's gauges."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.events import fresh
from patchbay.audit.metrics import CallMetrics, Exposition, render_calls
from patchbay.settings import Settings
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, modern_tool_call, running_gateway

pytestmark = pytest.mark.anyio

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')


def parse(text: str) -> dict[str, float]:
    """Samples by their full name with labels; fails on any line that is not valid exposition."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = _SAMPLE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return samples


async def test_metrics_count_calls_by_server_tool_channel_and_status_and_show_the_gateway_state(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    server_id = await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main", allow=[("fx__echo", "r")])
    ok = f'{{server="{server_id}",method="tools/call",tool="fx__echo",channel="mcp",status="ok"}}'
    denied = f'{{server="{server_id}",method="tools/call",tool="fx__add",channel="mcp",status="denied"}}'
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        for i in range(3):
            call = modern_tool_call(key, "fx__echo", {"text": str(i)}, call_id=i)
            assert (await http.post("/mcp", **call)).status_code == 200  # type: ignore[arg-type]
        await http.post("/mcp", **modern_tool_call(key, "fx__add", {"a": 1, "b": 2}))  # type: ignore[arg-type]
        await http.post("/mcp", json={}, headers={"Authorization": "Bearer pb_wrongwrongwrongwrongwrong"})
        async with asyncio.timeout(10):
            while True:
                response = await http.get("/metrics")
                samples = parse(response.text)
                # The auth.failed event is submitted after the denied call: wait for both to be counted.
                failed = samples.get('patchbay_security_events_total{event="auth.failed",status="denied"}')
                if samples.get(f"patchbay_calls_total{denied}") == 1 and failed is not None:
                    break
                await asyncio.sleep(0.02)
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert samples[f"patchbay_calls_total{ok}"] == 3
    assert samples[f"patchbay_call_duration_seconds_count{ok}"] == 3
    assert samples[f'patchbay_call_duration_seconds_bucket{ok[:-1]},le="+Inf"}}'] == 3
    assert samples[f"patchbay_call_duration_seconds_sum{ok}"] > 0
    assert samples['patchbay_security_events_total{event="auth.failed",status="denied"}'] == 1
    assert samples["patchbay_stdio_processes"] == 1
    assert samples['patchbay_upstream_up{upstream="fx",transport="stdio"}'] == 1
    assert samples['patchbay_cache_hits_total{cache="api_keys"}'] >= 3
    assert samples['patchbay_cache_misses_total{cache="api_keys"}'] >= 1
    assert samples['patchbay_cache_hits_total{cache="catalogs"}'] >= 3
    assert "patchbay_audit_queue_depth" in samples
    assert "patchbay_payload_queue_depth" in samples
    assert key[12:] not in response.text


def test_histogram_buckets_are_cumulative_and_label_values_are_escaped() -> None:
    metrics = CallMetrics()
    for ms in (0.5, 3.0, 3.0, 70_000.0):
        metrics.observe(fresh(server_id='s"1\n', method="tools/call", tool_name="t\\x", duration_ms=ms))
    out = Exposition()
    render_calls(out, metrics)
    samples = parse(out.text())
    base = 'server="s\\"1\\n",method="tools/call",tool="t\\\\x",channel="mcp",status="ok"'
    assert samples[f'patchbay_call_duration_seconds_bucket{{{base},le="0.001"}}'] == 1
    assert samples[f'patchbay_call_duration_seconds_bucket{{{base},le="0.005"}}'] == 3
    assert samples[f'patchbay_call_duration_seconds_bucket{{{base},le="60"}}'] == 3
    assert samples[f'patchbay_call_duration_seconds_bucket{{{base},le="+Inf"}}'] == 4
    assert samples[f"patchbay_call_duration_seconds_count{{{base}}}"] == 4
