"""Audit trail costs: records written per second (SQLite, PostgreSQL), and what auditing costs a proxied call.

Part 1, writer throughput: one ``AuditWriter`` per database takes ``--records`` realistic
events as fast as they can be submitted and writes them in batches; figures are records
per second from first submit to the last row committed, alternating databases each round.
PostgreSQL runs when ``--postgres URL`` (or ``PATCHBAY_BENCH_POSTGRES_URL``) names a
database migrated to head (the benchmark migrates it and deletes its own rows after).

Part 2, cost on the proxied-call benchmark: the ``proxy_overhead.py`` set-up (echo
upstream, ``patchbay serve``, lean load generator), alternating phases of direct calls,
gateway calls with payload capture on (the default: record + redacted gzip body in the
object store) and with it off (``patchbay server capture bench --off``: record only).
Printed: gateway CPU per call in each mode, each as a ratio to the direct upstream's, and
capture-on / capture-off.

    .venv/bin/python bench/audit_throughput.py [--records 20000] [--rounds 3] [--calls 3000]
    .venv/bin/python bench/audit_throughput.py --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/test_x
    .venv/bin/python bench/audit_throughput.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from patchbay.audit.events import AuditEvent, fresh
from patchbay.audit.writer import AuditWriter
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker
from procs import BenchError, Child, environ, run, stop
from proxy_overhead import (
    RESULTS,
    SECRET_KEY,
    Phase,
    aggregate,
    git_revision,
    patchbay_cli,
    run_phase,
    setup_gateway,
    start_gateway,
    start_upstream,
)

# --- part 1: writer throughput ------------------------------------------------------------------


def _events(count: int, tag: str) -> list[AuditEvent]:
    org, server, key, user = (os.urandom(16).hex() for _ in range(4))
    return [
        fresh(
            org_id=org,
            server_id=server,
            api_key_id=key,
            key_prefix="pb_AbCdEfGhI",
            user_id=user,
            auth_method="api_key",
            transport="streamable_http",
            method="tools/call",
            tool_name="echo__echo",
            tool_id=os.urandom(16).hex(),
            duration_ms=1.234,
            bytes_in=180,
            bytes_out=220,
            user_agent="bench/1.0",
            request_id=f"{tag}-{i}",
        )
        for i in range(count)
    ]


async def _write(url: str, count: int, tag: str) -> float:
    """Records per second for ``count`` events through one writer into ``url``."""
    from sqlalchemy import text

    engine = make_engine(url)
    try:
        events = _events(count, tag)
        async with AuditWriter(make_sessionmaker(engine)) as writer:
            started = time.perf_counter()
            for event in events:
                await writer.submit(event)
            await writer.flush()
            elapsed = time.perf_counter() - started
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_records WHERE request_id LIKE :tag"), {"tag": f"{tag}-%"})
        return count / elapsed
    finally:
        await engine.dispose()


def writer_throughput(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    dbs = {"sqlite": f"sqlite+aiosqlite:///{workdir / 'throughput.db'}"}
    if args.postgres:
        dbs["postgresql"] = args.postgres
    for url in dbs.values():
        migrate.upgrade(url)
    rates: dict[str, list[float]] = {name: [] for name in dbs}
    for r in range(1, args.rounds + 1):
        for name, url in dbs.items():
            rate = asyncio.run(_write(url, args.records, f"bench-{os.getpid()}-{r}"))
            rates[name].append(rate)
            print(f"round {r} {name:10s}: {rate:9.0f} records/s ({args.records} records)", flush=True)
    summary = {name: {"records_per_s": sum(v) / len(v), "by_round": [round(x) for x in v]} for name, v in rates.items()}
    for name, figures in summary.items():
        print(f"writer {name:10s}: {figures['records_per_s']:9.0f} records/s (mean of {args.rounds} rounds)")
    if "postgresql" in summary:
        ratio = summary["postgresql"]["records_per_s"] / summary["sqlite"]["records_per_s"]
        print(f"writer postgresql / sqlite: {ratio:.2f}")
    else:
        print("writer postgresql: skipped (pass --postgres URL or set PATCHBAY_BENCH_POSTGRES_URL)")
    return summary


# --- part 2: cost on the proxied call -----------------------------------------------------------


def proxied_cost(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data_dir = workdir / "data"
    env = environ(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_HOME=str(data_dir))
    children: list[Child] = []
    try:
        upstream, upstream_url = start_upstream(workdir, modern=False)
        children.append(upstream)
        key = setup_gateway(data_dir, upstream_url, env)
        gateway, gateway_url = start_gateway(workdir, data_dir, env)
        children.append(gateway)
        watched = {"upstream": upstream.pid, "gateway": gateway.pid}
        capture = [patchbay_cli(), "--data-dir", str(data_dir), "server", "capture", "bench"]
        phases: list[Phase] = []
        for r in range(1, args.rounds + 1):
            plan = [
                ("direct", upstream_url, "echo", None, None),
                ("capture_on", gateway_url, "echo__echo", key, "--on"),
                ("capture_off", gateway_url, "echo__echo", key, "--off"),
            ]
            if r % 2 == 0:  # alternate the order so drift does not favour one mode
                plan[1], plan[2] = plan[2], plan[1]
            for kind, url, tool, k, switch in plan:
                if switch is not None:
                    run([*capture, switch], env=env)
                calls = args.direct_calls if kind == "direct" else args.calls
                phase = run_phase(kind, r, url=url, tool=tool, key=k, args=args, watched=watched, calls=calls)
                phases.append(phase)
                print(
                    f"round {r} {kind:11s}: {phase.rps:7.0f} calls/s  CPU/call gateway"
                    f" {1000 * phase.cpu_s['gateway'] / phase.calls:.3f} ms"
                    f"  upstream {1000 * phase.cpu_s['upstream'] / phase.calls:.3f} ms"
                    + (f"  ERRORS {phase.errors}: {phase.first_errors}" if phase.errors else ""),
                    flush=True,
                )
        payloads = len(list((data_dir / "objects").rglob("*.json.gz")))
    finally:
        for child in reversed(children):
            stop(child)
    direct = aggregate(phases, "direct")
    on, off = aggregate(phases, "capture_on"), aggregate(phases, "capture_off")
    base = direct["cpu_ms_per_call"]["upstream"]
    on_ms, off_ms = on["cpu_ms_per_call"]["gateway"], off["cpu_ms_per_call"]["gateway"]
    print()
    print(f"direct upstream CPU/call:            {base:.3f} ms")
    print(f"gateway CPU/call, capture off:       {off_ms:.3f} ms  = {off_ms / base:.2f}x the upstream")
    print(f"gateway CPU/call, capture on:        {on_ms:.3f} ms  = {on_ms / base:.2f}x the upstream")
    print(f"payload capture on / off (gateway):  {on_ms / off_ms:.3f}")
    print(f"payloads stored during the run:      {payloads}")
    return {
        "direct": direct,
        "capture_on": on,
        "capture_off": off,
        "ratio_on_off": on_ms / off_ms,
        "ratio_off_direct": off_ms / base,
        "ratio_on_direct": on_ms / base,
        "payloads_stored": payloads,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000, help="events per writer round (default 20000)")
    parser.add_argument("--postgres", default=os.environ.get("PATCHBAY_BENCH_POSTGRES_URL"), help="PostgreSQL URL")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each part (default 3)")
    parser.add_argument("--calls", type=int, default=3000, help="measured gateway calls per phase (default 3000)")
    parser.add_argument("--direct-calls", type=int, default=None, help="measured direct calls per phase")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up calls per phase (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument("--payload", type=int, default=64, help="length of the echoed text (default 64)")
    parser.add_argument("--skip-proxy", action="store_true", help="only measure the writer")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round, 5000 records, 500 calls")
    parser.add_argument("--output", type=Path, default=RESULTS / "audit_throughput.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.rounds, args.calls, args.warmup = 5000, 1, 500, 50
    args.direct_calls = args.direct_calls or max(args.calls, 4000 if args.quick else args.calls)
    args.client_era = "legacy"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="patchbay-audit-bench-") as tmp:
            workdir = Path(tmp)
            figures: dict[str, Any] = {
                "benchmark": "audit_throughput",
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "git": git_revision(),
                "writer": writer_throughput(args, workdir),
            }
            if not args.skip_proxy:
                print()
                figures["proxied_call"] = proxied_cost(args, workdir)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    figures["wall_s"] = round(time.monotonic() - started, 1)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"\nfigures written to {args.output} ({figures['wall_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
