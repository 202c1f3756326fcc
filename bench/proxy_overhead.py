"""Proxy overhead: ``tools/call`` through the gateway versus straight to the same minimal upstream.

One run starts the echo upstream (``echo_upstream.py``: Starlette + orjson, uvicorn, one
worker), sets up a throw-away Patchbay data dir with the CLI, starts ``patchbay serve``,
and then alternates two phases a few rounds each, so that machine noise hits both alike:

  direct   the load generator calls ``echo`` on the upstream (after initialize);
  gateway  it calls ``echo__echo`` on ``POST /mcp`` with an API key.

Each phase runs in a fresh load-generator process (``loadgen.py``) that handshakes and
warms up first; CPU times (user + sys, psutil) of the gateway, the upstream and the load
generator are read right before and right after the measured calls.

Goal: the gateway spends at most 2x the CPU per proxied call that the upstream spends per
direct call. The exit code is 0 whether or not the goal is met (non-zero only if the
benchmark itself could not run).

    .venv/bin/python bench/proxy_overhead.py [--calls 3000] [--concurrency 8] [--rounds 3]
    .venv/bin/python bench/proxy_overhead.py --quick          # smoke run: 1 short round
    .venv/bin/python bench/proxy_overhead.py --profile        # + py-spy hot spots of the gateway
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson
import psutil

from hotspots import format_summary, load, summarize
from procs import (
    BenchError,
    Child,
    LineReader,
    cpu_seconds,
    cpu_split,
    environ,
    free_port,
    main_thread_cpu_seconds,
    run,
    settle,
    start,
    stop,
    wait_http,
)

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "results"
VENV_BIN = Path(sys.executable).parent
SECRET_KEY = "patchbay-bench-secret-key-0123456789"  # fixed for the run; never used outside it
GOAL = 2.0


@dataclass
class Phase:
    """The figures of one measured phase."""

    kind: str  # "direct" or "gateway"
    round: int
    calls: int
    errors: int
    elapsed_s: float
    cpu_s: dict[str, float]  # process name -> CPU seconds spent during the phase
    latencies_ms: list[float] = field(repr=False)
    first_errors: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.calls / self.elapsed_s if self.elapsed_s else 0.0


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


# --- setting up ---------------------------------------------------------------------------------


def start_upstream(workdir: Path, *, modern: bool) -> tuple[Child, str]:
    port = free_port()
    cmd = [sys.executable, str(BENCH / "echo_upstream.py"), "--port", str(port)]
    if modern:
        cmd.append("--modern")
    child = start("echo upstream", cmd, log=workdir / "upstream.log")
    url = f"http://127.0.0.1:{port}/mcp"
    wait_http(child, url, timeout=30)
    return child, url


def patchbay_cli() -> str:
    found = VENV_BIN / "patchbay"
    if found.exists():
        return str(found)
    which = shutil.which("patchbay")
    if which is None:
        raise BenchError("the patchbay command is not installed (expected .venv/bin/patchbay)")
    return which


def setup_gateway(data_dir: Path, upstream_url: str, env: dict[str, str], *, capture: bool = True) -> str:
    """Create upstream, server, user and key with the CLI; return the key."""
    cli = patchbay_cli()
    base = [cli, "--data-dir", str(data_dir)]
    run([*base, "upstream", "add", "echo", "--url", upstream_url], env=env)
    run([*base, "server", "create", "bench", "--upstream", "echo"], env=env)
    if not capture:
        run([*base, "server", "capture", "bench", "--off"], env=env)
    run([*base, "user", "create", "bench@example.com"], env=env)
    out = run([*base, "key", "create", "--server", "bench", "--user", "bench@example.com"], env=env)
    lines = [line.strip() for line in out.splitlines() if line.strip()]
    if not lines:
        raise BenchError("patchbay key create printed nothing")
    return lines[-1]


def start_gateway(workdir: Path, data_dir: Path, env: dict[str, str]) -> tuple[Child, str]:
    port = free_port()
    cmd = [patchbay_cli(), "serve", "--data-dir", str(data_dir), "--port", str(port)]
    child = start("patchbay serve", cmd, log=workdir / "gateway.log", env=env)
    base = f"http://127.0.0.1:{port}"
    status = wait_http(child, f"{base}/healthz", timeout=90)
    if status != 200:
        raise BenchError(f"GET /healthz answered {status}:\n{child.tail()}")
    return child, f"{base}/mcp"


# --- one phase ----------------------------------------------------------------------------------


def run_phase(
    kind: str,
    round_no: int,
    *,
    url: str,
    tool: str,
    key: str | None,
    args: argparse.Namespace,
    watched: dict[str, int],
    calls: int,
    around: Callable[[], Any] | None = None,
) -> Phase:
    """Spawn a load generator, let it warm up, and measure CPU of ``watched`` over its calls.

    ``around`` may return a context manager entered just before the measured calls
    (used to attach the profiler) and left right after.
    """
    cmd = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        "--url",
        url,
        "--tool",
        tool,
        "--era",
        args.client_era,
        "--calls",
        str(calls),
        "--warmup",
        str(args.warmup),
        "--concurrency",
        str(args.concurrency),
        "--payload",
        str(args.payload),
    ]
    if key:
        cmd += ["--key", key]
    with tempfile.TemporaryFile() as errors:
        gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        assert gen.stdin is not None
        assert gen.stdout is not None
        lines = LineReader(gen.stdout)
        try:
            ready = _message(lines, gen, errors, timeout=120)
            if "ready" not in ready:
                raise BenchError(f"{kind} phase: load generator failed: {ready.get('fatal', ready)}")
            pids = list(watched.values())
            settle(pids)
            with ExitStack() as stack:
                if around is not None:
                    stack.enter_context(around())
                before = _cpu(watched)
                before["loadgen"] = cpu_seconds(gen.pid)
                gen.stdin.write(b"go\n")
                gen.stdin.flush()
                done = _message(lines, gen, errors, timeout=max(120.0, calls * 0.2))
                after_gen = cpu_seconds(gen.pid)
                settle(pids)
                after = _cpu(watched)
            if "result" not in done:
                raise BenchError(f"{kind} phase: load generator failed: {done.get('fatal', done)}")
            gen.wait(30)
        finally:
            if gen.poll() is None:
                gen.kill()
                gen.wait()
    result = done["result"]
    cpu = {name: after[name] - before[name] for name in after}
    cpu["loadgen"] = after_gen - before["loadgen"]
    return Phase(
        kind=kind,
        round=round_no,
        calls=result["calls"],
        errors=result["errors"],
        elapsed_s=result["elapsed_s"],
        cpu_s=cpu,
        latencies_ms=result["latencies_ms"],
        first_errors=result["first_errors"],
    )


def _cpu(watched: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each watched process, its kernel share, and the gateway's main thread (the event loop)."""
    cpu: dict[str, float] = {}
    for name, pid in watched.items():
        user, system = cpu_split(pid)
        cpu[name] = user + system
        cpu[f"{name} kernel"] = system
    cpu["gateway main thread"] = main_thread_cpu_seconds(watched["gateway"])
    return cpu


def _message(lines: LineReader, gen: subprocess.Popen[bytes], errors: IO[bytes], *, timeout: float) -> dict[str, Any]:
    line = lines.next(timeout)
    if line is None:
        code = gen.wait()
        errors.seek(0)
        err = errors.read().decode(errors="replace")
        raise BenchError(f"load generator exited (code {code}) without a result:\n{err[-3000:]}")
    return dict(orjson.loads(line))


# --- profiling ----------------------------------------------------------------------------------


def py_spy() -> str | None:
    found = VENV_BIN / "py-spy"
    return str(found) if found.exists() else shutil.which("py-spy")


@contextmanager
def profiling(pid: int, output: Path, rate: int) -> Iterator[None]:
    """py-spy attached to ``pid`` for the duration of the block, writing collapsed stacks.

    ``--gil`` keeps only samples of the thread holding the GIL: without it, py-spy counts
    aiosqlite's idle worker threads (blocked in ``SimpleQueue.get``) as busy here. The price:
    native code that runs without the GIL (SQLite's engine) is missing, which is why the
    report also gives the CPU of the main thread and of the other threads from psutil.
    """
    exe = py_spy()
    if exe is None:
        raise BenchError("py-spy is not installed: .venv/bin/pip install py-spy")
    output.unlink(missing_ok=True)
    cmd = [exe, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "--function", "--gil"]
    cmd += ["--output", str(output)]
    log = output.with_suffix(".log")
    with log.open("wb") as out:
        spy = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    time.sleep(1.0)  # py-spy needs a moment to attach; the process is idle meanwhile
    if spy.poll() is not None:
        raise BenchError(f"py-spy exited with code {spy.returncode}: {log.read_text(errors='replace')}")
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def _set_affinity(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (threads it starts later inherit it)."""
    for thread in psutil.Process(pid).threads():
        with suppress(OSError):
            os.sched_setaffinity(thread.id, cpus)


@contextmanager
def pinned(*, gateway: int, others: list[int]) -> Iterator[None]:
    """The gateway alone on CPU 0; everything else (this driver, its children, the upstream) on the rest.

    py-spy counts a sample whenever the thread is runnable and holds the GIL, also while it
    waits for a CPU; on a shared 2-core box the scheduler then preempts the gateway right after
    each socket write that wakes a peer, which would pile samples onto those writes.
    """
    cpus = set(range(os.cpu_count() or 1))
    if len(cpus) < 2 or not hasattr(os, "sched_setaffinity"):
        yield
        return
    rest = cpus - {0}
    mine = os.sched_getaffinity(0)
    try:
        _set_affinity(gateway, {0})
        for pid in others:
            _set_affinity(pid, rest)
        os.sched_setaffinity(0, rest)
        yield
    finally:
        os.sched_setaffinity(0, mine)
        for pid in [gateway, *others]:
            with suppress(psutil.NoSuchProcess):
                _set_affinity(pid, cpus)


# --- reporting ----------------------------------------------------------------------------------


def aggregate(phases: list[Phase], kind: str) -> dict[str, Any]:
    mine = [p for p in phases if p.kind == kind]
    calls = sum(p.calls for p in mine)
    lat = [x for p in mine for x in p.latencies_ms]
    names = sorted({n for p in mine for n in p.cpu_s})
    return {
        "rounds": len(mine),
        "calls": calls,
        "errors": sum(p.errors for p in mine),
        "rps": calls / sum(p.elapsed_s for p in mine),
        "rps_by_round": [round(p.rps, 1) for p in mine],
        "p50_ms": percentile(lat, 50),
        "p90_ms": percentile(lat, 90),
        "p99_ms": percentile(lat, 99),
        "p50_ms_by_round": [round(percentile(p.latencies_ms, 50), 3) for p in mine],
        "cpu_ms_per_call": {n: 1000.0 * sum(p.cpu_s[n] for p in mine) / calls for n in names},
        "cpu_ms_per_call_by_round": {n: [round(1000.0 * p.cpu_s[n] / p.calls, 4) for p in mine] for n in names},
    }


def report(direct: dict[str, Any], gateway: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    d_cpu, g_cpu = direct["cpu_ms_per_call"], gateway["cpu_ms_per_call"]
    ratios = {
        "gateway_cpu_per_call_over_upstream_direct": g_cpu["gateway"] / d_cpu["upstream"],
        "p50_gateway_over_direct": gateway["p50_ms"] / direct["p50_ms"],
        "p99_gateway_over_direct": gateway["p99_ms"] / direct["p99_ms"],
        "rps_gateway_over_direct": gateway["rps"] / direct["rps"],
        # Not the verdict: the upstream measured in the same phases as the gateway, under the same
        # contention (three busy processes on the cores, not two). It moves far less with a noisy
        # host than the verdict's ratio does: use it to compare two versions (decision 0021 §0).
        "gateway_cpu_per_call_over_upstream_same_phase": g_cpu["gateway"] / g_cpu["upstream"],
    }
    cpu_ratio = ratios["gateway_cpu_per_call_over_upstream_direct"]
    spread = direct["cpu_ms_per_call_by_round"]["upstream"], gateway["cpu_ms_per_call_by_round"]["gateway"]
    rows = [
        ("calls measured", f"{direct['calls']}", f"{gateway['calls']}", ""),
        ("errors", f"{direct['errors']}", f"{gateway['errors']}", ""),
        (
            "throughput (calls/s)",
            f"{direct['rps']:.0f}",
            f"{gateway['rps']:.0f}",
            f"{ratios['rps_gateway_over_direct']:.2f}x",
        ),
        (
            "latency p50 (ms)",
            f"{direct['p50_ms']:.2f}",
            f"{gateway['p50_ms']:.2f}",
            f"{ratios['p50_gateway_over_direct']:.2f}x",
        ),
        ("latency p90 (ms)", f"{direct['p90_ms']:.2f}", f"{gateway['p90_ms']:.2f}", ""),
        (
            "latency p99 (ms)",
            f"{direct['p99_ms']:.2f}",
            f"{gateway['p99_ms']:.2f}",
            f"{ratios['p99_gateway_over_direct']:.2f}x",
        ),
        ("CPU/call upstream (ms)", f"{d_cpu['upstream']:.3f}", f"{g_cpu['upstream']:.3f}", ""),
        (
            "CPU/call gateway (ms)",
            f"{d_cpu['gateway']:.3f}  (idle)",
            f"{g_cpu['gateway']:.3f}",
            f"{cpu_ratio:.2f}x upstream",
        ),
        (
            "  of which main thread (ms)",
            "",
            f"{g_cpu['gateway main thread']:.3f}",
            f"other threads {g_cpu['gateway'] - g_cpu['gateway main thread']:.3f} ms",
        ),
        (
            "  of which kernel (ms)",
            f"upstream {d_cpu['upstream kernel']:.3f}",
            f"{g_cpu['gateway kernel']:.3f}",
            f"{g_cpu['gateway kernel'] / max(d_cpu['upstream kernel'], 1e-9):.2f}x upstream's",
        ),
        ("CPU/call load generator (ms)", f"{d_cpu['loadgen']:.3f}", f"{g_cpu['loadgen']:.3f}", ""),
        (
            "gateway over upstream, same phase",
            "",
            "",
            f"{ratios['gateway_cpu_per_call_over_upstream_same_phase']:.2f}x  (A/B aid, not the verdict)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(
        f"Proxy overhead: {args.rounds} rounds x tools/call ({args.direct_calls} direct, {args.calls} via "
        f"the gateway), concurrency {args.concurrency}, "
        f"client era {args.client_era}, upstream era {'modern' if args.modern_upstream else 'legacy'}"
    )
    print(f"{'':{width}}  {'direct':>16}  {'via gateway':>16}  ratio")
    for name, a, b, ratio in rows:
        print(f"{name:{width}}  {a:>16}  {b:>16}  {ratio}")
    print()
    print(f"per round: upstream CPU/call direct {spread[0]} ms; gateway CPU/call {spread[1]} ms")
    print(f"per round: p50 direct {direct['p50_ms_by_round']} ms; via gateway {gateway['p50_ms_by_round']} ms")
    for kind, figures, name in (("direct", direct, "upstream"), ("gateway", gateway, "gateway")):
        spent = figures["cpu_ms_per_call"][name] * figures["calls"] / 1000.0
        if spent < 0.5:
            print(
                f"note: the {name} spent only {spent:.2f} s CPU in the {kind} phases; psutil's clock-tick "
                f"resolution (0.01 s per sample) makes that figure rough: use more calls"
            )
    met = cpu_ratio <= GOAL
    verdict = "MET" if met else "NOT MET"
    print()
    floor = os.environ.get("PATCHBAY_BENCH_FLOOR")
    if floor:
        # bench/floor/sitecustomize.py replaced the MCP endpoint: a yardstick, not the gateway.
        verdict = f"NOT JUDGED (floor instrument '{floor}', not the gateway; would be {verdict})"
        met = False
    print(
        f"GOAL {verdict}: the gateway spends {g_cpu['gateway']:.3f} ms CPU per proxied call = "
        f"{cpu_ratio:.2f}x the upstream's {d_cpu['upstream']:.3f} ms per direct call (goal <= {GOAL:g}x)"
    )
    return {"ratios": ratios, "goal": {"max_cpu_ratio": GOAL, "met": met, "cpu_ratio": cpu_ratio}}


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{rev}{'+dirty' if dirty else ''}" if rev else "unknown"


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10000, help="measured calls per phase (default 10000)")
    parser.add_argument(
        "--direct-calls", type=int, help="measured calls per direct phase (default: --calls; --quick: 4000)"
    )
    parser.add_argument("--warmup", type=int, default=300, help="warm-up calls per phase (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections, one session each (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="direct+gateway phase pairs (default 3)")
    parser.add_argument("--quick", action="store_true", help="short smoke run: 1 round of 300 calls after 50 warm-up")
    parser.add_argument("--payload", type=int, default=64, help="length of the echoed text (default 64)")
    parser.add_argument("--tool", default="echo__echo", help="the tool's name as the gateway exposes it")
    parser.add_argument(
        "--client-era",
        choices=["legacy", "modern"],
        default="legacy",
        help="how the load generator talks MCP (default legacy: initialize + session; modern implies "
        "--modern-upstream)",
    )
    parser.add_argument(
        "--modern-upstream",
        action="store_true",
        help="let the echo upstream answer server/discover (2026-07-28) instead of -32601",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured rounds, profile one more gateway phase with py-spy",
    )
    parser.add_argument("--profile-calls", type=int, default=3000, help="calls in the profiled phase (default 3000)")
    parser.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for patchbay serve (e.g. PATCHBAY_LOG_LEVEL=WARNING)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS / "proxy_overhead.json")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and logs")
    parser.add_argument(
        "--no-payloads", action="store_true", help="switch payload capture off for the bench server (default: on)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.warmup, args.rounds = 300, 50, 1
        # Direct calls are cheap; enough of them keep the denominator above the 10 ms clock tick.
        args.direct_calls = args.direct_calls or 4000
    args.direct_calls = args.direct_calls or args.calls
    # The direct phase speaks the client's era to the upstream, which then has to know it too.
    args.modern_upstream = args.modern_upstream or args.client_era == "modern"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="patchbay-bench-"))
    data_dir = workdir / "data"
    env = environ(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_HOME=str(data_dir))
    for item in args.gateway_env:
        name, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--gateway-env wants KEY=VALUE, got {item!r}")
        env[name] = value
    children: list[Child] = []
    started = time.monotonic()
    try:
        upstream, upstream_url = start_upstream(workdir, modern=args.modern_upstream)
        children.append(upstream)
        print(f"echo upstream pid {upstream.pid} at {upstream_url}", flush=True)
        key = setup_gateway(data_dir, upstream_url, env, capture=not args.no_payloads)
        gateway, gateway_url = start_gateway(workdir, data_dir, env)
        children.append(gateway)
        print(
            f"patchbay serve pid {gateway.pid} at {gateway_url} (data dir {data_dir}; "
            f"set up in {time.monotonic() - started:.1f} s)",
            flush=True,
        )
        watched = {"upstream": upstream.pid, "gateway": gateway.pid}
        phases: list[Phase] = []
        for r in range(1, args.rounds + 1):
            for kind, url, tool, k, calls in (
                ("direct", upstream_url, "echo", None, args.direct_calls),
                ("gateway", gateway_url, args.tool, key, args.calls),
            ):
                phase = run_phase(kind, r, url=url, tool=tool, key=k, args=args, watched=watched, calls=calls)
                phases.append(phase)
                p50 = percentile(phase.latencies_ms, 50)
                print(
                    f"round {r} {kind:7s}: {phase.rps:7.0f} calls/s  p50 {p50:6.2f} ms"
                    f"  CPU/call upstream {1000 * phase.cpu_s['upstream'] / phase.calls:.3f} ms"
                    f"  gateway {1000 * phase.cpu_s['gateway'] / phase.calls:.3f} ms"
                    f"  loadgen {1000 * phase.cpu_s['loadgen'] / phase.calls:.3f} ms"
                    + (f"  ERRORS {phase.errors}: {phase.first_errors}" if phase.errors else ""),
                    flush=True,
                )
        direct, via = aggregate(phases, "direct"), aggregate(phases, "gateway")
        verdict = report(direct, via, args)
        profile: dict[str, Any] | None = None
        if args.profile:
            profile = run_profile(args, gateway_url, key, watched)
        figures = {
            "benchmark": "proxy_overhead",
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "git": git_revision(),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "gateway_env"}
            | {"gateway_env": args.gateway_env},
            "floor_instrument": os.environ.get("PATCHBAY_BENCH_FLOOR"),
            "direct": direct,
            "gateway": via,
            **verdict,
            "profile": profile,
            "phases": [{k: v for k, v in asdict(p).items() if k != "latencies_ms"} for p in phases],
            "wall_s": round(time.monotonic() - started, 1),
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(orjson.dumps(figures, option=orjson.OPT_INDENT_2) + b"\n")
        print(f"\nfigures written to {args.output} ({figures['wall_s']} s)")
        if direct["errors"] or via["errors"]:
            print("WARNING: some calls failed; see first_errors in the phases", file=sys.stderr)
        return 0
    except BenchError as exc:
        print(f"\nbenchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            stop(child)
        if args.keep:
            print(f"kept {workdir} (logs: upstream.log, gateway.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_profile(args: argparse.Namespace, gateway_url: str, key: str, watched: dict[str, int]) -> dict[str, Any]:
    """One extra gateway phase with py-spy attached to the gateway; print and return its hot spots."""
    output = RESULTS / "gateway_profile.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    calls = args.profile_calls
    print(f"\nprofiling the gateway with py-spy over {calls} calls ...", flush=True)
    with pinned(gateway=watched["gateway"], others=[watched["upstream"]]):
        phase = run_phase(
            "gateway",
            0,
            url=gateway_url,
            tool=args.tool,
            key=key,
            args=args,
            watched=watched,
            calls=calls,
            around=lambda: profiling(watched["gateway"], output, args.profile_rate),
        )
    summary = summarize(load(output), top=25)
    text = format_summary(summary)
    (RESULTS / "gateway_hotspots.txt").write_text(text + "\n")
    total, main = (1000 * phase.cpu_s[n] / phase.calls for n in ("gateway", "gateway main thread"))
    print(
        f"(under py-spy: {phase.rps:.0f} calls/s; gateway CPU/call {total:.3f} ms, main thread {main:.3f}, "
        f"other threads {total - main:.3f}; sampling adds overhead)"
    )
    print(text)
    print(f"\nraw stacks: {output}; report: {RESULTS / 'gateway_hotspots.txt'}")
    return {
        "samples": summary.total,
        "raw": str(output),
        "self_by_area": summary.self_by_area,
        "patchbay_inclusive": summary.patchbay_inclusive,
        "self_top": summary.self_top,
    }


if __name__ == "__main__":
    sys.exit(main())
