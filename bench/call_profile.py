"""Python calls per proxied request: the gateway served in this process under cProfile.

py-spy (``proxy_overhead.py --profile``) samples time, and callgrind (``callgrind_ratio.py``)
counts instructions without naming Python functions. This counts calls: it sets up the
``proxy_overhead.py`` data dir and echo upstream, serves the gateway in this process (uvicorn
with our HTTP/1.1 protocol, uvloop, as ``patchbay serve`` does), lets the lean load generator
warm up in a child process, then profiles the main thread over the measured calls. It prints
Python-level calls per request and the functions by own time, per request.

Own times are cProfile's: every call pays the profiler's overhead, so small functions look
dearer than they are. Read them with the call counts. A coroutine counts one call per resume.
SQLAlchemy's greenlets show up as long times in ``exec_driver_sql``: the profiler charges the
time a greenlet is switched out to its frame. Threads other than the event loop's (aiosqlite)
are not profiled.

Enabling cProfile in a running ``patchbay serve`` (a signal handler, or at start-up) recorded
nothing of the request path; the cause was not found. Serving in-process works.

    .venv/bin/python bench/call_profile.py [--calls 5000] [--payloads] [--top 40] [--output FILE]
                                           [--client-era legacy|modern]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from procs import BenchError, environ, free_port, stop
from proxy_overhead import BENCH, RESULTS, SECRET_KEY, setup_gateway, start_upstream

if TYPE_CHECKING:
    from patchbay.settings import Settings

# Shown relative to these: our sources, installed packages, the standard library.
_ROOTS = (
    str(Path(__file__).resolve().parents[1] / "src") + "/",
    sysconfig.get_paths()["purelib"] + "/",
    sysconfig.get_paths()["platlib"] + "/",
    sysconfig.get_paths()["stdlib"] + "/",
)


def short(path: str) -> str:
    for root in _ROOTS:
        if path.startswith(root):
            return path[len(root) :]
    return path


async def serve_and_load(
    settings: Settings, key: str, calls: int, profiler: cProfile.Profile, era: str = "legacy"
) -> None:
    import uvicorn

    from patchbay.app import create_app, server_config

    app = create_app(settings)
    server = uvicorn.Server(server_config(app, settings, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            raise BenchError("the gateway did not start")
        await asyncio.sleep(0.05)
    cmd = [sys.executable, str(BENCH / "loadgen.py"), "--url", f"http://127.0.0.1:{settings.port}/mcp"]
    cmd += [
        "--tool",
        "echo__echo",
        "--calls",
        str(calls),
        "--warmup",
        "300",
        "--concurrency",
        "8",
        "--key",
        key,
        "--era",
        era,
    ]
    gen = await asyncio.create_subprocess_exec(*cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert gen.stdin is not None
    assert gen.stdout is not None
    try:
        ready = await gen.stdout.readline()
        if b'"ready"' not in ready:
            raise BenchError(f"load generator failed: {ready[:300]!r}")
        profiler.enable()
        gen.stdin.write(b"go\n")
        await gen.stdin.drain()
        done = await gen.stdout.readline()
        await asyncio.sleep(0.3)  # audit and payload batches written after the last answer
        profiler.disable()
        if b'"result"' not in done:
            raise BenchError(f"load generator failed: {done[:300]!r}")
        await gen.wait()
    finally:
        if gen.returncode is None:
            gen.kill()
        server.should_exit = True
        await task


def report(stats: pstats.Stats, calls: int, top: int) -> str:
    table: dict[tuple[str, int, str], tuple[int, int, float, float, dict[object, object]]]
    table = stats.stats  # type: ignore[attr-defined]
    lines = [f"Python-level calls per request: {sum(row[1] for row in table.values()) / calls:.0f}", ""]
    lines.append(f"{'calls/req':>9}  {'own µs/req':>10}  {'cum µs/req':>10}  function")
    ranked = sorted(table.items(), key=lambda item: -item[1][2])
    for (path, line, name), (_prim, ncalls, own, cum, _callers) in ranked[:top]:
        where = f"{short(path)}:{line}" if line else short(path)
        lines.append(f"{ncalls / calls:9.2f}  {own * 1e6 / calls:10.1f}  {cum * 1e6 / calls:10.1f}  {where} {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000, help="profiled calls (default 5000)")
    parser.add_argument("--payloads", action="store_true", help="keep payload capture on (default: off)")
    parser.add_argument("--client-era", choices=["legacy", "modern"], default="legacy", help="the load's client era")
    parser.add_argument("--top", type=int, default=40, help="functions listed (default 40)")
    parser.add_argument("--output", type=Path, default=RESULTS / "call_profile.txt")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="patchbay-callprof-"))
    data_dir = workdir / "data"
    env = environ(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_HOME=str(data_dir))
    upstream = None
    try:
        upstream, upstream_url = start_upstream(workdir, modern=False)
        key = setup_gateway(data_dir, upstream_url, env, capture=args.payloads)
        os.environ.update(PATCHBAY_SECRET_KEY=SECRET_KEY, PATCHBAY_HOME=str(data_dir))
        import uvloop

        from patchbay.bootstrap import prepare_database
        from patchbay.settings import Settings

        settings = Settings(port=free_port())
        prepare_database(settings)
        profiler = cProfile.Profile()
        uvloop.run(serve_and_load(settings, key, args.calls, profiler, args.client_era))
        text = report(pstats.Stats(profiler), args.calls, args.top)
        print(text)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
        print(f"\nwritten to {args.output}")
        return 0
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if upstream is not None:
            stop(upstream)
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
