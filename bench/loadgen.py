"""A lean MCP load generator: keep-alive HTTP/1.1 on asyncio streams, one session per connection.

It runs in its own process so that its CPU never counts against the process being
measured, and it spends as little as it can per call (pre-built request heads,
uvloop when installed, no HTTP library) so that it is not the bottleneck.

Protocol with the driver (``proxy_overhead.py``), one JSON object per stdout line:

  1. connect, handshake every connection, run the warm-up calls;
  2. print ``{"ready": true, ...}`` and wait for any line on stdin;
  3. run the measured calls, print ``{"result": {...}}`` (with every latency) and exit.

The driver samples process CPU times between 2 and 3, so handshakes, warm-up and
interpreter start-up stay out of the measurement.

    python bench/loadgen.py --url http://127.0.0.1:9100/mcp --tool echo --calls 3000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import orjson

LEGACY_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
CLIENT_INFO = {"name": "patchbay-bench", "version": "1.0.0"}
CLIENT_CAPABILITIES: dict[str, Any] = {}


class ProtocolFailure(Exception):
    """The server answered something the benchmark cannot use."""


class Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads the whole response."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    async def request(self, head: bytes, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
        """Send one request (``head`` ends just before Content-Length); return status, headers, body."""
        reader, writer = await self._open()
        writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (head, len(body), body))
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw[:-4].split(b"\r\n")
        status = int(lines[0][9:12])
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        length = headers.get(b"content-length")
        if length is not None:
            data = await reader.readexactly(int(length))
        elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
            data = await _read_chunked(reader)
        elif status in (204, 304) or 100 <= status < 200:
            data = b""
        else:
            data = await reader.read()
            await self.close()
        if headers.get(b"connection", b"").lower() == b"close":
            await self.close()
        return status, headers, data

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readline()).split(b";", 1)[0], 16)
        if size == 0:
            # Trailers (none expected) end with an empty line.
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size + 2))
        parts[-1] = parts[-1][:-2]


def _decode(status: int, headers: dict[bytes, bytes], body: bytes) -> dict[str, Any]:
    """The JSON-RPC response in a plain JSON body or in an SSE stream."""
    if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
        found: dict[str, Any] | None = None
        for line in body.splitlines():
            if line.startswith(b"data:"):
                message = orjson.loads(line[5:])
                if isinstance(message, dict) and ("result" in message or "error" in message):
                    found = message
        if found is None:
            raise ProtocolFailure(f"HTTP {status}: SSE stream without a response: {body[:300]!r}")
        return found
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ProtocolFailure(f"HTTP {status}: not JSON: {body[:300]!r}") from None
    if not isinstance(message, dict):
        raise ProtocolFailure(f"HTTP {status}: not a JSON-RPC object: {body[:300]!r}")
    return message


class McpClient:
    """One MCP client on one connection: legacy (initialize + session) or modern (stateless envelope)."""

    def __init__(self, url: str, *, key: str | None, era: str) -> None:
        parts = urlsplit(url)
        self.conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        self.era = era
        self.session_id: str | None = None
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._base = (
            f"POST {self._path} HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\n"
            "Content-Type: application/json\r\n"
            "Accept: application/json, text/event-stream\r\n"
            "User-Agent: patchbay-bench/1\r\n"
        )
        if key:
            self._base += f"Authorization: Bearer {key}\r\n"
        self._next_id = 0
        self._heads: dict[tuple[str, str | None], bytes] = {}

    def _head(self, method: str, name: str | None) -> bytes:
        head = self._heads.get((method, name))
        if head is None:
            text = self._base
            if self.era == "modern":
                text += f"MCP-Protocol-Version: {MODERN_VERSION}\r\nMcp-Method: {method}\r\n"
                if name is not None:
                    text += f"Mcp-Name: {name}\r\n"
            elif self.session_id is not None:
                text += f"Mcp-Session-Id: {self.session_id}\r\nMCP-Protocol-Version: {LEGACY_VERSION}\r\n"
            head = self._heads[(method, name)] = text.encode("latin-1")
        return head

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.era != "modern":
            return params
        meta = {
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientCapabilities": CLIENT_CAPABILITIES,
            "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        }
        return {**params, "_meta": meta}

    async def handshake(self) -> None:
        """Legacy: initialize, keep the session id, send notifications/initialized. Modern: nothing."""
        if self.era == "modern":
            return
        body = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": 0,
                "method": "initialize",
                "params": {
                    "protocolVersion": LEGACY_VERSION,
                    "capabilities": CLIENT_CAPABILITIES,
                    "clientInfo": CLIENT_INFO,
                },
            }
        )
        status, headers, data = await self.conn.request(self._head("initialize", None), body)
        message = _decode(status, headers, data)
        if status != 200 or "result" not in message:
            raise ProtocolFailure(f"initialize failed: HTTP {status}: {data[:300]!r}")
        session = headers.get(b"mcp-session-id")
        self.session_id = session.decode("latin-1") if session else None
        self._heads.clear()
        note = orjson.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
        status, _, data = await self.conn.request(self._head("notifications/initialized", None), note)
        if status not in (200, 202):
            raise ProtocolFailure(f"notifications/initialized failed: HTTP {status}: {data[:300]!r}")

    async def call(self, method: str, params: dict[str, Any], name: str | None = None) -> dict[str, Any]:
        """Send one request and return its JSON-RPC response object."""
        self._next_id += 1
        body = orjson.dumps({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": self._params(params)})
        status, headers, data = await self.conn.request(self._head(method, name), body)
        return _decode(status, headers, data)


async def _one_call(client: McpClient, tool: str, text: str) -> str | None:
    """One tools/call; None if the echo came back intact, else why not."""
    try:
        response = await client.call("tools/call", {"name": tool, "arguments": {"text": text}}, tool)
    except (ProtocolFailure, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        await client.conn.close()
        return f"{type(exc).__name__}: {exc}"
    result = response.get("result")
    try:
        if result["content"][0]["text"] == text and not result.get("isError"):
            return None
    except (KeyError, IndexError, TypeError):
        pass
    return f"unexpected answer: {orjson.dumps(response)[:300]!r}"


async def drive(clients: list[McpClient], *, calls: int, tool: str, text: str) -> dict[str, Any]:
    """Run ``calls`` tools/call requests spread over the clients, each client one at a time."""
    latencies: list[float] = []
    errors: list[str] = []
    remaining = calls
    perf = time.perf_counter

    async def worker(client: McpClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = perf()
            problem = await _one_call(client, tool, text)
            latencies.append(perf() - t0)
            if problem is not None:
                errors.append(problem)

    cpu0, t0 = time.process_time(), perf()
    await asyncio.gather(*(worker(c) for c in clients))
    elapsed, cpu = perf() - t0, time.process_time() - cpu0
    return {
        "calls": len(latencies),
        "errors": len(errors),
        "first_errors": sorted(set(errors))[:5],
        "elapsed_s": elapsed,
        "loadgen_cpu_s": cpu,
        "latencies_ms": [round(x * 1000.0, 4) for x in latencies],
    }


def _emit(payload: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(payload).decode() + "\n")
    sys.stdout.flush()


async def amain(args: argparse.Namespace) -> int:
    clients = [McpClient(args.url, key=args.key, era=args.era) for _ in range(args.concurrency)]
    text = ("x" * args.payload)[: args.payload]
    try:
        await asyncio.gather(*(c.handshake() for c in clients))
        listed = await clients[0].call("tools/list", {})
        names = [t.get("name") for t in (listed.get("result") or {}).get("tools", [])]
        if args.tool not in names:
            _emit({"fatal": f"tool {args.tool!r} not listed; tools/list answered {names or listed}"})
            return 2
        warm = await drive(clients, calls=args.warmup, tool=args.tool, text=text)
        if warm["errors"]:
            _emit({"fatal": f"{warm['errors']} warm-up calls failed: {warm['first_errors']}"})
            return 2
    except (ProtocolFailure, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        _emit({"fatal": f"{type(exc).__name__}: {exc}"})
        return 2
    _emit({"ready": True, "sessions": [c.session_id for c in clients]})
    if not args.no_wait:
        await asyncio.to_thread(sys.stdin.readline)
    result = await drive(clients, calls=args.calls, tool=args.tool, text=text)
    _emit({"result": result})
    for client in clients:
        await client.conn.close()
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the MCP endpoint, e.g. http://127.0.0.1:9100/mcp")
    parser.add_argument("--key", help="API key sent as Authorization: Bearer")
    parser.add_argument("--tool", default="echo", help="tool name as the server lists it")
    parser.add_argument("--era", choices=["legacy", "modern"], default="legacy")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--payload", type=int, default=64, help="length of the echoed text")
    parser.add_argument("--no-wait", action="store_true", help="start measuring without waiting for stdin")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    try:
        import uvloop
    except ImportError:
        sys.exit(asyncio.run(amain(args)))
    sys.exit(uvloop.run(amain(args)))


if __name__ == "__main__":
    main()
