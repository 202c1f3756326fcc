"""Local tool calls over MCP and REST side by side: calls per second of one gateway process, p99 latency.

One run starts the echo upstream, sets up a throw-away data dir with the CLI (a document,
a get / query / update tool on it, a server with those tools and the upstream's ``echo``,
an API key, a tool key for ``read_meta``), starts ``patchbay serve``, and then alternates
phases for a few rounds so machine noise hits all alike. Every phase runs over MCP
(``tools/call`` with the API key) and over REST (``POST /api/v1/tools/{name}/execute`` with
the same API key in ``X-API-Key``); one more REST phase authenticates with the tool key:

  proxied  ``echo__echo``: the gateway forwards to the upstream (the reference)
  get      ``read_meta``: a local get (one SELECT)
  query    ``find_items``: a local JMESPath query over 100 items
  update   ``bump``: a local merge-patch update (SELECT … FOR UPDATE on PostgreSQL, compare-and-swap UPDATE)
  get-tk   ``read_meta`` over REST with ``X-Tool-Key`` (the tool key is checked in the database per call)

For each phase and channel it prints calls/s, p50 and p99 latency, and the gateway's CPU
milliseconds per call; then each local kind as a ratio to the proxied call over MCP, and
each REST phase as a ratio to the same phase over MCP, all measured in the same run.

    .venv/bin/python bench/local_tools.py [--calls 2000] [--concurrency 8] [--rounds 3] [--era legacy|modern]
    .venv/bin/python bench/local_tools.py --quick
    PATCHBAY_DATABASE_URL=postgresql://... .venv/bin/python bench/local_tools.py   # on PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson

from loadgen import Connection, McpClient, ProtocolFailure
from procs import BenchError, cpu_seconds, environ, free_port, run, settle, start, stop, wait_http

BENCH = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
SECRET_KEY = "patchbay-bench-secret-key-0123456789"  # fixed for the run; never used outside it

SHOP = {"items": [{"name": f"item{i}", "price": i % 37} for i in range(100)], "meta": {"owner": "bench", "n": 0}}

# phase -> (tool, arguments)
PHASES: dict[str, tuple[str, dict[str, Any]]] = {
    "proxied": ("echo__echo", {"text": "x" * 64}),
    "get": ("read_meta", {}),
    "query": ("find_items", {"expression": "[?price > `30`].name"}),
    "update": ("bump", {"merge": {"n": 1}}),
}
CHANNELS = ("mcp", "rest")
TOOL_KEY_PHASE = "get-tk"  # REST only

Call = Callable[[str, dict[str, Any]], Awaitable[str | None]]  # a problem, or None when the call worked
Phase = tuple[str, list[Call], str, dict[str, Any]]  # label, one call per client, tool, arguments


T = TypeVar("T")


async def _again_if_closed(conn: Connection, send: Callable[[], Awaitable[T]]) -> T:
    # The gateway closes keep-alive connections idle for 5 s, as happens to one channel's clients
    # while the other channel's phase runs: reconnect once.
    try:
        return await send()
    except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError):
        await conn.close()
        return await send()


class RestClient:
    """``POST /api/v1/tools/{tool}/execute`` on one keep-alive connection."""

    def __init__(self, base_url: str, *, header: str) -> None:
        parts = urlsplit(base_url)
        self.conn = Connection(parts.hostname or "127.0.0.1", parts.port or 80)
        self._host = parts.netloc
        self._header = header
        self._heads: dict[str, bytes] = {}

    async def call(self, tool: str, arguments: dict[str, Any]) -> str | None:
        head = self._heads.get(tool)
        if head is None:
            head = self._heads[tool] = (
                f"POST /api/v1/tools/{tool}/execute HTTP/1.1\r\nHost: {self._host}\r\n"
                f"Content-Type: application/json\r\nUser-Agent: patchbay-bench/1\r\n{self._header}\r\n"
            ).encode("latin-1")
        status, _headers, body = await _again_if_closed(
            self.conn, lambda: self.conn.request(head, orjson.dumps(arguments))
        )
        if status != 200:
            return f"HTTP {status}: {body[:300]!r}"
        result = orjson.loads(body)
        return str(result)[:300] if isinstance(result, dict) and result.get("isError") else None


def mcp_call(client: McpClient) -> Call:
    async def call(tool: str, arguments: dict[str, Any]) -> str | None:
        params = {"name": tool, "arguments": arguments}
        response = await _again_if_closed(client.conn, lambda: client.call("tools/call", params, tool))
        result = response.get("result")
        return None if isinstance(result, dict) and not result.get("isError") else str(response)[:300]

    return call


@dataclass
class Totals:
    calls: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    gateway_cpu_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    first_error: str | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def setup(cli: str, data_dir: Path, upstream_url: str, env: dict[str, str]) -> tuple[str, str]:
    """Document, tools, server and keys through the CLI; returns the API key and a tool key for read_meta."""
    base = [cli, "--data-dir", str(data_dir)]
    run([*base, "upstream", "add", "echo", "--url", upstream_url], env=env)
    run([*base, "doc", "create", "shop", "--json", json.dumps(SHOP)], env=env)
    run([*base, "tool", "create", "read_meta", "--doc", "shop", "--path", "/meta", "--type", "get"], env=env)
    run([*base, "tool", "create", "find_items", "--doc", "shop", "--path", "/items", "--type", "query"], env=env)
    run([*base, "tool", "create", "bump", "--doc", "shop", "--path", "/meta", "--type", "update"], env=env)
    run([*base, "server", "create", "bench", "--upstream", "echo"], env=env)
    for tool in ("read_meta", "find_items", "bump"):
        run([*base, "tool", "attach", tool, "--server", "bench"], env=env)
    run([*base, "user", "create", "bench@example.com"], env=env)
    out = run([*base, "key", "create", "--server", "bench", "--user", "bench@example.com"], env=env)
    tool_key = run([*base, "toolkey", "create", "read_meta"], env=env)
    return out.strip().splitlines()[-1], tool_key.strip().splitlines()[-1]


async def drive(calls_of: list[Call], *, tool: str, arguments: dict[str, Any], calls: int) -> Totals:
    """``calls`` tool calls spread over the clients, each client one request at a time."""
    totals = Totals()
    remaining = calls

    async def worker(call: Call) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                problem = await call(tool, arguments)
            except (ProtocolFailure, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            totals.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            totals.calls += 1
            if problem is not None:
                totals.errors += 1
                totals.first_error = totals.first_error or problem

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in calls_of))
    totals.elapsed_s = time.perf_counter() - t0
    return totals


async def measure(args: argparse.Namespace, base: str, keys: tuple[str, str], gateway_pid: int) -> dict[str, Totals]:
    era = "modern" if args.era == "modern" else "legacy"
    api_key, tool_key = keys
    mcp = [McpClient(f"{base}/mcp", key=api_key, era=era) for _ in range(args.concurrency)]
    await asyncio.gather(*(c.handshake() for c in mcp))
    rest = [RestClient(base, header=f"X-API-Key: {api_key}") for _ in range(args.concurrency)]
    rest_tk = [RestClient(base, header=f"X-Tool-Key: {tool_key}") for _ in range(args.concurrency)]
    plan: list[Phase] = []
    for name, (tool, arguments) in PHASES.items():
        plan.append((f"mcp {name}", [mcp_call(c) for c in mcp], tool, arguments))
        plan.append((f"rest {name}", [c.call for c in rest], tool, arguments))
    plan.append((f"rest {TOOL_KEY_PHASE}", [c.call for c in rest_tk], *PHASES["get"]))
    results = {label: Totals() for label, *_ in plan}
    for round_no in range(args.rounds):
        # Which channel goes first alternates per round: a phase also pays for what the one before left
        # behind (audit rows and payloads still being written, on SQLite competing for the write lock).
        order = plan if round_no % 2 == 0 else _swap_pairs(plan)
        for label, calls_of, tool, arguments in order:
            warm = await drive(calls_of, tool=tool, arguments=arguments, calls=args.warmup)
            if warm.errors:
                raise BenchError(f"{label}: warm-up failed: {warm.first_error}")
            settle([gateway_pid])
            cpu0 = cpu_seconds(gateway_pid)
            got = await drive(calls_of, tool=tool, arguments=arguments, calls=args.calls)
            cpu = cpu_seconds(gateway_pid) - cpu0
            total = results[label]
            total.calls += got.calls
            total.errors += got.errors
            total.elapsed_s += got.elapsed_s
            total.gateway_cpu_s += cpu
            total.latencies_ms.extend(got.latencies_ms)
            total.first_error = total.first_error or got.first_error
            print(f"  round {round_no + 1} {label:13s} {got.calls / got.elapsed_s:8.0f} calls/s", flush=True)
    for client in [*mcp, *rest, *rest_tk]:
        await client.conn.close()
    return results


def _swap_pairs(plan: list[Phase]) -> list[Phase]:
    out = list(plan)
    for i in range(0, len(out) - 1, 2):
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


def report(results: dict[str, Totals], args: argparse.Namespace, database: str) -> None:
    print()
    print(
        f"local tools over MCP ({args.era}) and REST, {database}, concurrency {args.concurrency}, "
        f"{args.rounds} x {args.calls} calls per phase"
    )
    print(f"{'phase':13s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'gw CPU ms/call':>15s} {'errors':>7s}")
    rows: dict[str, tuple[float, float, float, float]] = {}
    for name, t in results.items():
        rate = t.calls / t.elapsed_s if t.elapsed_s else float("nan")
        cpu_ms = t.gateway_cpu_s * 1000.0 / t.calls if t.calls else float("nan")
        p50, p99 = percentile(t.latencies_ms, 0.5), percentile(t.latencies_ms, 0.99)
        rows[name] = (rate, p50, p99, cpu_ms)
        print(f"{name:13s} {rate:9.0f} {p50:8.2f} {p99:8.2f} {cpu_ms:15.2f} {t.errors:7d}")
        if t.first_error:
            print(f"              first error: {t.first_error}")
    print()
    print("ratio to the proxied call over MCP, same run (calls/s: higher is better; CPU/call: lower is better)")
    ref = rows["mcp proxied"]
    for name in ("get", "query", "update"):
        rate, _p50, p99, cpu_ms = rows[f"mcp {name}"]
        ratios = f"calls/s x{rate / ref[0]:.2f}   p99 x{p99 / ref[2]:.2f}   gateway CPU/call x{cpu_ms / ref[3]:.2f}"
        print(f"  {name:7s} {ratios}")
    print()
    print("REST to MCP, same phase, same run")
    for name in [*PHASES, TOOL_KEY_PHASE]:
        rate, _p50, p99, cpu_ms = rows[f"rest {name}"]
        mcp = rows[f"mcp {name if name != TOOL_KEY_PHASE else 'get'}"]
        ratios = f"calls/s x{rate / mcp[0]:.2f}   p99 x{p99 / mcp[2]:.2f}   gateway CPU/call x{cpu_ms / mcp[3]:.2f}"
        print(f"  {name:7s} {ratios}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="measured calls per phase and round")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--era", choices=["legacy", "modern"], default="legacy")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 300 calls")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.rounds = 300, 50, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cli = str(VENV_BIN / "patchbay")
    env = environ(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_LOG_LEVEL="WARNING")
    database = "PostgreSQL" if os.environ.get("PATCHBAY_DATABASE_URL", "").startswith("postgres") else "SQLite"
    with tempfile.TemporaryDirectory(prefix="patchbay-local-bench-") as tmp:
        work = Path(tmp)
        up_port, gw_port = free_port(), free_port()
        upstream = start(
            "echo upstream",
            [sys.executable, str(BENCH / "echo_upstream.py"), "--port", str(up_port)],
            log=work / "upstream.log",
        )
        gateway = None
        try:
            wait_http(upstream, f"http://127.0.0.1:{up_port}/mcp", timeout=30)
            keys = setup(cli, work / "data", f"http://127.0.0.1:{up_port}/mcp", env)
            gateway = start(
                "patchbay serve",
                [cli, "serve", "--data-dir", str(work / "data"), "--port", str(gw_port)],
                log=work / "gateway.log",
                env=env,
            )
            wait_http(gateway, f"http://127.0.0.1:{gw_port}/healthz", timeout=90)
            results = asyncio.run(measure(args, f"http://127.0.0.1:{gw_port}", keys, gateway.pid))
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            log = work / "gateway.log"
            if log.exists():
                print("gateway log (end):\n" + log.read_text(errors="replace")[-3000:], file=sys.stderr)
            return 1
        finally:
            if gateway is not None:
                stop(gateway)
            stop(upstream)
    report(results, args, database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
