"""Instructions per proxied call under callgrind: a repeatable companion to ``proxy_overhead.py``.

CPU seconds on a shared 2-core box drift by ±30 % between runs; instruction counts do not.
This runs the same setup as ``proxy_overhead.py`` with the echo upstream and the gateway
each under ``valgrind --tool=callgrind --instr-atstart=no``, and counts user-space
instructions only while the measured calls run (``callgrind_control -i on/off``, then a
dump). It prints instructions per call for the upstream in the direct phase and for the
gateway in the gateway phase, and their ratio.

What it leaves out: kernel time (system calls), which psutil's CPU seconds include, and
cache or branch behaviour. Both processes run ~50x slower under valgrind, so at a given
concurrency more requests arrive per event-loop turn than natively; use ``--concurrency 1``
for a figure free of that batching. Use it to compare two versions of the gateway, and
``proxy_overhead.py`` for the verdict in CPU seconds.

    .venv/bin/python bench/callgrind_ratio.py [--calls 300] [--concurrency 1] [--keep] [--no-payloads]
                                              [--client-era legacy|modern]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from procs import BenchError, Child, LineReader, environ, free_port, start, stop, wait_http
from proxy_overhead import BENCH, SECRET_KEY, patchbay_cli, setup_gateway

_TOTALS = re.compile(rb"^totals:\s+(\d+)", re.MULTILINE)


def valgrind(out: Path) -> list[str]:
    exe = shutil.which("valgrind")
    if exe is None:
        raise BenchError("valgrind is not installed")
    return [exe, "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]


def control(pid: int, *flags: str) -> None:
    subprocess.run(["callgrind_control", *flags, str(pid)], check=True, capture_output=True, timeout=120)


def instructions(dump_dir: Path, stem: str) -> int:
    """Sum of the instruction totals of every dump (one per thread part) whose name starts with ``stem``."""
    total = 0
    for path in dump_dir.glob(f"{stem}*"):
        found = _TOTALS.search(path.read_bytes())
        if found:
            total += int(found.group(1))
    return total


def measure(
    child: Child, dump_dir: Path, stem: str, *, url: str, tool: str, key: str | None, args: argparse.Namespace
) -> float:
    """Instructions ``child`` executes per call while the load generator makes ``args.calls`` calls."""
    cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", url, "--tool", tool, "--calls", str(args.calls)]
    cmd += ["--warmup", str(args.warmup), "--concurrency", str(args.concurrency)]
    if key:
        cmd += ["--key", key, "--era", args.client_era]
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert gen.stdin is not None
    assert gen.stdout is not None
    lines = LineReader(gen.stdout)
    try:
        ready = orjson.loads(lines.next(600) or b"{}")
        if "ready" not in ready:
            raise BenchError(f"load generator failed: {ready}")
        time.sleep(1.0)  # let deferred work of the warm-up (audit batches) finish before counting
        control(child.pid, "--zero")
        control(child.pid, "-i", "on")
        gen.stdin.write(b"go\n")
        gen.stdin.flush()
        done = orjson.loads(lines.next(3600) or b"{}")
        time.sleep(1.0)  # the gateway's deferred work (audit rows) belongs to these calls
        control(child.pid, "-i", "off")
        control(child.pid, "--dump")
        gen.wait(60)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
    result = done.get("result")
    if not result or result["errors"]:
        raise BenchError(f"load generator failed: {done}")
    return instructions(dump_dir, stem) / result["calls"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--tool", default="echo__echo")
    parser.add_argument(
        "--client-era", choices=["legacy", "modern"], default="legacy", help="the gateway phase's client era"
    )
    parser.add_argument("--keep", action="store_true", help="keep the dumps (callgrind_annotate them)")
    parser.add_argument(
        "--no-payloads", action="store_true", help="switch payload capture off for the bench server (default: on)"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="patchbay-callgrind-"))
    data_dir = workdir / "data"
    env = environ(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_HOME=str(data_dir))
    children: list[Child] = []
    try:
        port = free_port()
        cmd = [sys.executable, str(BENCH / "echo_upstream.py"), "--port", str(port)]
        upstream = start("echo upstream", valgrind(workdir / "upstream.cg") + cmd, log=workdir / "upstream.log")
        children.append(upstream)
        upstream_url = f"http://127.0.0.1:{port}/mcp"
        wait_http(upstream, upstream_url, timeout=300)
        key = setup_gateway(data_dir, upstream_url, env, capture=not args.no_payloads)
        gport = free_port()
        cmd = [patchbay_cli(), "serve", "--data-dir", str(data_dir), "--port", str(gport)]
        gateway = start("patchbay serve", valgrind(workdir / "gateway.cg") + cmd, log=workdir / "gateway.log", env=env)
        children.append(gateway)
        wait_http(gateway, f"http://127.0.0.1:{gport}/healthz", timeout=600)
        direct = measure(upstream, workdir, "upstream.cg", url=upstream_url, tool="echo", key=None, args=args)
        via = measure(
            gateway, workdir, "gateway.cg", url=f"http://127.0.0.1:{gport}/mcp", tool=args.tool, key=key, args=args
        )
        print(f"callgrind, {args.calls} calls, concurrency {args.concurrency}, client era {args.client_era}:")
        print(f"  upstream, direct phase: {direct / 1000:9.1f} k instructions per call")
        print(f"  gateway, gateway phase: {via / 1000:9.1f} k instructions per call")
        print(f"  ratio: {via / direct:.2f}x")
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            stop(child, grace=60)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
