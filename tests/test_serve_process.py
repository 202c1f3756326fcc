"""``patchbay serve`` as a real process: SIGTERM drains the audit queue and ends every upstream process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import anyio
import httpx
import psutil
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, free_port, make_key, make_server

pytestmark = pytest.mark.anyio


def _env(settings: Settings, port: int) -> dict[str, str]:
    env = {**os.environ, "PATCHBAY_HOME": str(settings.home), "PATCHBAY_PORT": str(port)}
    env["PATCHBAY_SECRET_KEY"] = settings.secret_key or ""
    if settings.database_url:
        env["PATCHBAY_DATABASE_URL"] = settings.database_url
    return env


async def test_sigterm_drains_audit_and_ends_upstream_process_groups(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a real child process, waited on with bounded timeouts
        [sys.executable, "-m", "patchbay", "serve"],
        env=_env(settings, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "gateway did not start"
                await anyio.sleep(0.05)
            modern = {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {},
            }
            calls = 20
            for i in range(calls):
                body = {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "tools/call",
                    "params": {"name": "fx__echo", "arguments": {"text": str(i)}, "_meta": modern},
                }
                headers = {
                    "Authorization": f"Bearer {key}",
                    "MCP-Protocol-Version": "2026-07-28",
                    "Mcp-Method": "tools/call",
                    "Mcp-Name": "fx__echo",
                }
                answer = await http.post("/mcp", json=body, headers=headers)
                assert answer.json()["result"]["content"][0]["text"] == str(i)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the stdio upstream should be running"
        proc.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"upstream processes left behind: {[p.pid for p in alive]}"
    async with sessionmaker() as session:
        recorded = await session.scalar(
            select(func.count()).select_from(AuditRecord).where(AuditRecord.method == "tools/call")
        )
    assert recorded == calls


async def test_sigterm_under_load_records_every_accepted_call_exactly_once(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Known calls from 8 concurrent clients; SIGTERM lands mid-load; each answered call has one record and payload."""
    from tests.harness import modern_tool_call

    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    key = await make_key(sessionmaker, settings, server="main")
    port = free_port()
    proc = subprocess.Popen(  # noqa: ASYNC220 - a real child process, waited on with bounded timeouts
        [sys.executable, "-m", "patchbay", "serve"],
        env=_env(settings, port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    budget, workers, signal_after = 600, 8, 150
    accepted: list[str] = []
    sent = 0
    halfway = anyio.Event()

    async def worker(n: int) -> None:
        nonlocal sent
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            while sent < budget:
                sent += 1
                request_id = f"load-{n}-{sent:06d}"
                call = modern_tool_call(key, "fx__echo", {"text": request_id}, call_id=sent)
                call["headers"]["X-Request-Id"] = request_id  # type: ignore[index]
                try:
                    answer = await http.post("/mcp", **call)  # type: ignore[arg-type]
                except httpx.TransportError:
                    return  # the gateway stopped accepting: this call was never answered
                if answer.status_code == 200 and answer.json()["result"]["content"][0]["text"] == request_id:
                    accepted.append(request_id)
                if len(accepted) >= signal_after:
                    halfway.set()

    try:
        async with httpx.AsyncClient(base_url=base, timeout=20) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "gateway did not start"
                await anyio.sleep(0.05)
        async with anyio.create_task_group() as group:
            for n in range(workers):
                group.start_soon(worker, n)
            with anyio.fail_after(60):
                await halfway.wait()
            proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert signal_after <= len(accepted) < budget, "SIGTERM should land mid-load"
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(AuditRecord.request_id, AuditRecord.payload_key).where(AuditRecord.method == "tools/call")
            )
        ).all()
    recorded = Counter(request_id for request_id, _ in rows)
    assert {rid for rid in accepted if recorded[rid] != 1} == set()
    payloads = {request_id: key for request_id, key in rows}
    missing = [rid for rid in accepted if payloads[rid] is None or not (settings.objects_dir / payloads[rid]).exists()]
    assert missing == []
