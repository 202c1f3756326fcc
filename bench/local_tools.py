"""Local tool calls over MCP: calls per second of one gateway process and p99 latency, beside proxied calls.

One run starts the echo upstream, sets up a throw-away data dir with the CLI (a document,
a get / query / update tool on it, a server with those tools and the upstream's ``echo``,
a key), starts ``patchbay serve``, and then alternates phases for a few rounds so machine
noise hits all alike:

  proxied  ``echo__echo``: the gateway forwards to the upstream (the reference)
  get      ``read_meta``: a local get (one SELECT)
  query    ``find_items``: a local JMESPath query over 100 items
  update   ``bump``: a local merge-patch update (SELECT … FOR UPDATE on PostgreSQL, compare-and-swap UPDATE)

For each phase it prints calls/s, p50 and p99 latency, and the gateway's CPU milliseconds
per call; then each local kind as a ratio to the proxied call measured in the same run.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import McpClient, ProtocolFailure
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


def setup(cli: str, data_dir: Path, upstream_url: str, env: dict[str, str]) -> str:
    """Document, tools, server and key through the CLI; returns the key."""
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
    return out.strip().splitlines()[-1]


async def drive(clients: list[McpClient], *, tool: str, arguments: dict[str, Any], calls: int) -> Totals:
    """``calls`` tools/call spread over the clients, each client one request at a time."""
    totals = Totals()
    remaining = calls

    async def worker(client: McpClient) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                response = await client.call("tools/call", {"name": tool, "arguments": arguments}, tool)
                result = response.get("result")
                problem = None if isinstance(result, dict) and not result.get("isError") else str(response)[:300]
            except (ProtocolFailure, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            totals.latencies_ms.append((time.perf_counter() - t0) * 1000.0)
            totals.calls += 1
            if problem is not None:
                totals.errors += 1
                totals.first_error = totals.first_error or problem

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    totals.elapsed_s = time.perf_counter() - t0
    return totals


async def measure(args: argparse.Namespace, url: str, key: str, gateway_pid: int) -> dict[str, Totals]:
    era = "modern" if args.era == "modern" else "legacy"
    clients = [McpClient(url, key=key, era=era) for _ in range(args.concurrency)]
    await asyncio.gather(*(c.handshake() for c in clients))
    results = {name: Totals() for name in PHASES}
    for round_no in range(args.rounds):
        for name, (tool, arguments) in PHASES.items():
            warm = await drive(clients, tool=tool, arguments=arguments, calls=args.warmup)
            if warm.errors:
                raise BenchError(f"{name}: warm-up failed: {warm.first_error}")
            settle([gateway_pid])
            cpu0 = cpu_seconds(gateway_pid)
            got = await drive(clients, tool=tool, arguments=arguments, calls=args.calls)
            cpu = cpu_seconds(gateway_pid) - cpu0
            total = results[name]
            total.calls += got.calls
            total.errors += got.errors
            total.elapsed_s += got.elapsed_s
            total.gateway_cpu_s += cpu
            total.latencies_ms.extend(got.latencies_ms)
            total.first_error = total.first_error or got.first_error
            print(f"  round {round_no + 1} {name:8s} {got.calls / got.elapsed_s:8.0f} calls/s", flush=True)
    for client in clients:
        await client.conn.close()
    return results


def report(results: dict[str, Totals], args: argparse.Namespace, database: str) -> None:
    print()
    print(
        f"local tools over MCP ({args.era}), {database}, concurrency {args.concurrency}, "
        f"{args.rounds} x {args.calls} calls per phase"
    )
    print(f"{'phase':8s} {'calls/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'gw CPU ms/call':>15s} {'errors':>7s}")
    rows: dict[str, tuple[float, float, float, float]] = {}
    for name, t in results.items():
        rate = t.calls / t.elapsed_s if t.elapsed_s else float("nan")
        cpu_ms = t.gateway_cpu_s * 1000.0 / t.calls if t.calls else float("nan")
        p50, p99 = percentile(t.latencies_ms, 0.5), percentile(t.latencies_ms, 0.99)
        rows[name] = (rate, p50, p99, cpu_ms)
        print(f"{name:8s} {rate:9.0f} {p50:8.2f} {p99:8.2f} {cpu_ms:15.2f} {t.errors:7d}")
        if t.first_error:
            print(f"         first error: {t.first_error}")
    print()
    print("ratio to the proxied call, same run (calls/s: higher is better; CPU/call: lower is better)")
    ref = rows["proxied"]
    for name in ("get", "query", "update"):
        rate, _p50, p99, cpu_ms = rows[name]
        ratios = f"calls/s x{rate / ref[0]:.2f}   p99 x{p99 / ref[2]:.2f}   gateway CPU/call x{cpu_ms / ref[3]:.2f}"
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
            key = setup(cli, work / "data", f"http://127.0.0.1:{up_port}/mcp", env)
            gateway = start(
                "patchbay serve",
                [cli, "serve", "--data-dir", str(work / "data"), "--port", str(gw_port)],
                log=work / "gateway.log",
                env=env,
            )
            wait_http(gateway, f"http://127.0.0.1:{gw_port}/healthz", timeout=90)
            results = asyncio.run(measure(args, f"http://127.0.0.1:{gw_port}/mcp", key, gateway.pid))
        except BenchError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if gateway is not None:
                stop(gateway)
            stop(upstream)
    report(results, args, database)
    return 0


if __name__ == "__main__":
    sys.exit(main())
