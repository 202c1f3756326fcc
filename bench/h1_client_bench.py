"""Client CPU per request: httpx.AsyncClient versus patchbay's H1Pool, against the same echo server.

Starts a minimal uvicorn + raw ASGI + orjson JSON-RPC echo server in a child process, then,
in this process, sends the same ``tools/call``-shaped POST with each client over keep-alive
connections, at each concurrency, alternating the clients round after round so that machine
noise hits both alike. It reports the CPU this process spent per request (time.process_time:
user + system, all threads), the median over the rounds, and the ratio H1Pool / httpx.

Each client is used the way the gateway uses it: httpx with a pre-parsed ``httpx.URL`` and
``client.stream`` + ``aread`` (as in routing/upstream/http.py), H1Pool with a pre-parsed
``URL`` and ``request`` + ``read``. Every response body is checked.

    .venv/bin/python bench/h1_client_bench.py                       # N=5000, concurrency 1 and 8, 3 rounds
    .venv/bin/python bench/h1_client_bench.py --requests 2000 --rounds 1 --loop asyncio
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

from patchbay.routing.upstream.h1 import URL, H1Pool
from procs import BenchError, free_port, start, stop, wait_http

REQUEST = orjson.dumps(
    {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "hello from the benchmark " * 4}},
    }
)
HEADERS = {
    "accept": "application/json, text/event-stream",
    "content-type": "application/json",
    "mcp-protocol-version": "2025-11-25",
    "mcp-session-id": "0123456789abcdef0123456789abcdef",
}


# The server (run with --serve PORT in the child process).


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer a JSON-RPC ``tools/call`` with its ``text`` argument; anything else with ``ok``."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] == "POST":
        call = orjson.loads(body)
        text = call["params"]["arguments"]["text"]
        reply = orjson.dumps(
            {"jsonrpc": "2.0", "id": call["id"], "result": {"content": [{"type": "text", "text": text}]}}
        )
    else:
        reply = b"ok"
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": reply})


def serve(port: int) -> None:
    import uvicorn

    uvicorn.run(echo_app, host="127.0.0.1", port=port, lifespan="off", log_level="warning", access_log=False)


# The clients.

Call = Callable[[], Awaitable[bytes]]


def httpx_call(client: httpx.AsyncClient, url: httpx.URL) -> Call:
    async def call() -> bytes:
        async with client.stream("POST", url, content=REQUEST, headers=HEADERS) as response:
            return await response.aread()

    return call


def h1_call(pool: H1Pool, url: URL) -> Call:
    async def call() -> bytes:
        response = await pool.request("POST", url, HEADERS, REQUEST)
        return await response.read()

    return call


async def drive(call: Call, requests: int, concurrency: int, expected: bytes) -> tuple[float, float]:
    """Send ``requests`` calls over ``concurrency`` workers; (CPU seconds, wall seconds)."""
    per_worker, extra = divmod(requests, concurrency)

    async def worker(count: int) -> None:
        for _ in range(count):
            if await call() != expected:
                raise BenchError("a response body came back wrong")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))
    return time.process_time() - cpu, time.perf_counter() - wall


@dataclass
class Figures:
    cpu_us: list[float] = field(default_factory=list)
    rps: list[float] = field(default_factory=list)


async def measure(base: str, args: argparse.Namespace) -> dict[tuple[str, int], Figures]:
    url = base + "/mcp"
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    results: dict[tuple[str, int], Figures] = {}
    async with httpx.AsyncClient(limits=limits, timeout=10) as client, H1Pool(max_per_origin=100) as pool:
        calls = {"httpx": httpx_call(client, httpx.URL(url)), "h1": h1_call(pool, URL(url))}
        expected = await calls["h1"]()
        if await calls["httpx"]() != expected:
            raise BenchError("the two clients got different answers")
        for round_no in range(args.rounds):
            # Alternate which client goes first, so neither always runs on a warmer machine.
            order = list(calls) if round_no % 2 == 0 else list(reversed(calls))
            for concurrency in args.concurrency:
                for name in order:
                    await drive(calls[name], args.warmup, concurrency, expected)
                    cpu, wall = await drive(calls[name], args.requests, concurrency, expected)
                    figures = results.setdefault((name, concurrency), Figures())
                    figures.cpu_us.append(cpu / args.requests * 1e6)
                    figures.rps.append(args.requests / wall)
                    print(
                        f"  round {round_no + 1} {name:>5} c={concurrency}: "
                        f"{figures.cpu_us[-1]:7.1f} µs CPU/request, {figures.rps[-1]:7.0f} req/s",
                        flush=True,
                    )
    return results


def report(results: dict[tuple[str, int], Figures], args: argparse.Namespace) -> None:
    print()
    print(
        f"Client CPU per request (median of {args.rounds} rounds, N={args.requests}, "
        f"loop={args.loop}, Python {sys.version.split()[0]})"
    )
    print(
        f"{'concurrency':>11} | {'httpx µs':>9} | {'H1Pool µs':>9} | {'H1/httpx':>8} | {'req/s httpx':>11} | "
        f"{'req/s H1':>9}"
    )
    for concurrency in args.concurrency:
        slow, fast = results[("httpx", concurrency)], results[("h1", concurrency)]
        cpu_httpx, cpu_h1 = statistics.median(slow.cpu_us), statistics.median(fast.cpu_us)
        print(
            f"{concurrency:>11} | {cpu_httpx:9.1f} | {cpu_h1:9.1f} | {cpu_h1 / cpu_httpx:8.2f} | "
            f"{statistics.median(slow.rps):11.0f} | {statistics.median(fast.rps):9.0f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000, help="measured requests per client and round")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop", help="as the gateway runs")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        server = start(
            "echo server",
            [sys.executable, str(Path(__file__).resolve()), "--serve", str(port)],
            log=Path(tmp) / "server.log",
        )
        try:
            wait_http(server, f"http://127.0.0.1:{port}/")
            base = f"http://127.0.0.1:{port}"
            if args.loop == "uvloop":
                import uvloop

                results = uvloop.run(measure(base, args))
            else:
                results = asyncio.run(measure(base, args))
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            sys.exit(1)
        finally:
            stop(server)
    report(results, args)


if __name__ == "__main__":
    main()
