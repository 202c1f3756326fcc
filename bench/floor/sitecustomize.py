"""A bench instrument, never the product: the MCP endpoint replaced by the least a proxied call needs.

``proxy_overhead.py`` with this folder on ``PYTHONPATH`` and ``PATCHBAY_BENCH_FLOOR`` set runs
``patchbay serve`` with every transport piece unchanged: our HTTP/1.1 server and its ASGI
calls, the key resolver (HMAC and cache), the catalog, the upstream pool and HTTP client, and
(with ``audit``) one audit record per call through the real writer. Everything the MCP layers
add is dropped: sessions, the Host/Origin check, request ids, the request context, the
exchange, the handler table, the pipeline's stages, and all error handling.

    PYTHONPATH=bench/floor PATCHBAY_BENCH_FLOOR=audit .venv/bin/python bench/proxy_overhead.py --no-payloads
    PYTHONPATH=bench/floor PATCHBAY_BENCH_FLOOR=bare  .venv/bin/python bench/proxy_overhead.py --no-payloads

The gap between ``audit`` and the real gateway is what the MCP layers cost per call. Decision
0017 has the figures.

Two more modes keep the whole gateway and knock out a piece of its audit, to split what the
audit costs (decision 0022):

- ``audit-no-db``: every record is built, queued, counted and encoded into its statements as
  usual; the statements are not executed (SQLite's own work, its commits and checkpoints);
- ``no-audit``: every record is built; none is queued (the writer does nothing).
"""

from __future__ import annotations

import os
import secrets
import time
from typing import Any

_MODE = os.environ.get("PATCHBAY_BENCH_FLOOR", "")

if _MODE in ("bare", "audit"):
    import orjson

    from patchbay.mcp.context import AuditNote
    from patchbay.mcp.exchange import Outcome
    from patchbay.web import mcp_endpoint, mcp_post

    _JSON = [(b"content-type", b"application/json")]

    async def _answer(send: Any, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        headers = [*_JSON, *extra, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _floor(self: Any, scope: Any, receive: Any, send: Any) -> None:
        gw = self.gw
        started = time.perf_counter()
        headers = dict(scope["headers"])
        body = (await receive())["body"]
        message = orjson.loads(body)
        method = message.get("method")
        principal = await gw.resolver.resolve(headers[b"authorization"][7:].decode())
        if "id" not in message:
            await send({"type": "http.response.start", "status": 202, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        request_id = message["id"]
        if method == "initialize":
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "floor"}}
            session = [(b"mcp-session-id", secrets.token_urlsafe(32).encode())]
            await _answer(send, orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}), session)
            return
        params = message.get("params") or {}
        catalog = await gw.catalogs.get(principal.server_id, principal.server_revision)
        if method != "tools/call":  # the load generator's tools/list
            tools = [{"name": name, "inputSchema": {"type": "object"}} for name in catalog.tools]
            await _answer(send, orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": {"tools": tools}}), [])
            return
        route = catalog.tools[params["name"]]
        chosen = route.upstream.resolve(principal, principal.user_id)
        call = {**params, "name": route.upstream_name}
        response = await gw.pool.request(chosen.spec, "tools/call", call, timeout=30.0, sink=None)
        out = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "result": response["result"]})
        await _answer(send, out, [])
        if _MODE == "audit":
            # The gateway's own record builder, so the floor's audit row is the real one.
            note = AuditNote(tool_name=params["name"], tool_id=route.tool_id, credential=chosen.credential)
            user_agent = {"user-agent": headers.get(b"user-agent", b"").decode()}
            outcome = Outcome(200, len(out), None)
            event = mcp_post._audit(principal, user_agent, method, "legacy", note, outcome, len(body), started)
            gw.audit.submit_nowait(event)

    mcp_endpoint.McpEndpoint.__call__ = _floor  # type: ignore[method-assign]

elif _MODE == "audit-no-db":
    from collections.abc import Iterable

    from patchbay.audit.sqlite_loop import LoopSqlite

    async def _encode_only(self: Any, statements: Iterable[tuple[str, Any]], rows: int) -> None:
        for _ in statements:  # each chunk's rows are encoded as the generator yields it
            pass

    LoopSqlite.insert = _encode_only  # type: ignore[method-assign]

elif _MODE == "no-audit":
    from patchbay.audit.writer import AuditWriter

    AuditWriter.submit_nowait = lambda self, event: True  # type: ignore[method-assign]
