"""Run the pinned MCP conformance suites against one server URL and record per-scenario results.

    python conformance/run.py URL LABEL            # e.g. http://127.0.0.1:8000/mcp gateway
    python conformance/run.py fixture direct       # starts tests.fixtures.conformance_server itself

Writes `conformance/results/LABEL.json` (per suite run: every scenario, pass/fail, the worst
status of each check, the failure messages) and each run's console log beside it, then prints
a summary. Needs `npm ci --prefix conformance` first (it installs both suite versions and the
Node 22 runtime they run on). Exits 1 when a suite run produced no results at all; scenario
failures are data for `compare.py`, not an error here.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
NODE = HERE / "node_modules" / ".bin" / "node"
RESULTS = HERE / "results"
FIXTURE_START_SECONDS = 30.0
RUN_TIMEOUT_SECONDS = 600.0

# Worst first: a check id reported several times in one scenario keeps its worst status.
STATUS_RANK = {"FAILURE": 4, "WARNING": 3, "SUCCESS": 2, "INFO": 1, "SKIPPED": 0}
SUMMARY_LINE = re.compile(r"^([✓✗]) (\S+): (\d+) passed, (\d+) failed$")
SCENARIO_DIR = re.compile(r"^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$")


@dataclass(frozen=True)
class SuiteRun:
    """One invocation of one pinned suite version."""

    key: str
    package: str
    args: tuple[str, ...]


SUITE_RUNS = (
    SuiteRun("0.1.16", "conformance-0.1.16", ()),
    SuiteRun(
        "0.2.0-alpha.12@2026-07-28",
        "conformance-0.2.0-alpha.12",
        ("--suite", "all", "--spec-version", "2026-07-28"),
    ),
    SuiteRun(
        "0.2.0-alpha.12@2025-11-25",
        "conformance-0.2.0-alpha.12",
        ("--suite", "all", "--spec-version", "2025-11-25"),
    ),
)


def suite_command(run: SuiteRun, url: str, output_dir: Path) -> list[str]:
    """The exact command line for one suite run."""
    entry = HERE / "node_modules" / run.package / "dist" / "index.js"
    return [str(NODE), str(entry), "server", "--url", url, *run.args, "-o", str(output_dir)]


def read_checks(output_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's checks, from the `server-<scenario>-<timestamp>/checks.json` files."""
    checks: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(output_dir.glob("*/checks.json")):
        match = SCENARIO_DIR.match(path.parent.name)
        if match:
            checks.setdefault(match.group(1), []).extend(json.loads(path.read_text()))
    return checks


def summarise_scenario(checks: list[dict[str, Any]], passed_by_cli: bool | None) -> dict[str, Any]:
    """Collapse a scenario's checks into pass/fail, worst status per check id and the failures."""
    worst: dict[str, str] = {}
    failures: list[str] = []
    for check in checks:
        status = check.get("status", "FAILURE")
        if STATUS_RANK.get(status, 4) >= STATUS_RANK.get(worst.get(check["id"], "SKIPPED"), 0):
            worst[check["id"]] = status
        if status == "FAILURE":
            failures.append(f"{check['id']}: {check.get('errorMessage') or check.get('description', '')}")
    passed = not failures if passed_by_cli is None else passed_by_cli and not failures
    return {"passed": passed, "checks": dict(sorted(worst.items())), "failures": failures}


def run_suite(run: SuiteRun, url: str, log_path: Path) -> dict[str, Any]:
    """Run one suite version against `url`; return its per-scenario results."""
    with tempfile.TemporaryDirectory(prefix="conformance-") as output:
        command = suite_command(run, url, Path(output))
        started = time.monotonic()
        completed = subprocess.run(
            command,
            cwd=HERE,
            env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"},
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_SECONDS,
            check=False,
        )
        duration = time.monotonic() - started
        log_path.write_text(completed.stdout + completed.stderr)
        verdicts = {
            m.group(2): m.group(1) == "✓" for line in completed.stdout.splitlines() if (m := SUMMARY_LINE.match(line))
        }
        checks = read_checks(Path(output))
    scenarios = {
        name: summarise_scenario(checks.get(name, []), verdicts.get(name))
        for name in sorted(verdicts.keys() | checks.keys())
    }
    return {
        "command": " ".join(["node", str(Path(command[1]).relative_to(HERE)), *command[2:-2]]),
        "exit_code": completed.returncode,
        "duration_seconds": round(duration, 1),
        "scenarios": scenarios,
    }


def _drain(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


@contextmanager
def fixture_server() -> Iterator[str]:
    """Start the conformance fixture on a free port; yield its URL; stop it on exit."""
    command = [sys.executable, "-m", "tests.fixtures.conformance_server", "--transport", "streamable-http"]
    process = subprocess.Popen(command, cwd=REPO, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    # A reader thread keeps draining stderr so the fixture never blocks on a full pipe.
    reader = threading.Thread(target=_drain, args=(process.stderr, lines), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + FIXTURE_START_SECONDS
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.001))
            if line.startswith("READY "):
                break
        yield line.removeprefix("READY ").strip()
    except queue.Empty:
        raise SystemExit(f"the fixture did not print READY within {FIXTURE_START_SECONDS:.0f}s") from None
    finally:
        process.terminate()
        process.wait(timeout=10)


def print_summary(results: dict[str, Any]) -> None:
    """Per suite run: how many scenarios passed, and the first failure of each that did not."""
    print(f"\n{results['label']}: {results['url']} ({results['duration_seconds']}s)")
    for key, run in results["runs"].items():
        scenarios = run["scenarios"]
        passed = sum(1 for s in scenarios.values() if s["passed"])
        print(f"  {key}: {passed}/{len(scenarios)} scenarios passed ({run['duration_seconds']}s)")
        for name, scenario in scenarios.items():
            if not scenario["passed"]:
                reason = scenario["failures"][0] if scenario["failures"] else "failed without a check"
                print(f"    FAIL {name}: {reason[:200]}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the MCP endpoint to test, or 'fixture' to start the fixture")
    parser.add_argument("label", help="names the results file: conformance/results/LABEL.json")
    parser.add_argument("--only", action="append", choices=[r.key for r in SUITE_RUNS], help="repeatable")
    options = parser.parse_args(argv)
    if not NODE.exists():
        print("conformance/node_modules is missing: run `npm ci --prefix conformance`", file=sys.stderr)
        return 1
    runs = [r for r in SUITE_RUNS if not options.only or r.key in options.only]
    logs = RESULTS / f"{options.label}.logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with fixture_server() if options.url == "fixture" else _given(options.url) as url:
        by_run = {}
        for run in runs:
            print(f"running {run.key} against {url}", flush=True)
            by_run[run.key] = run_suite(run, url, logs / f"{run.key}.log")
    results = {
        "label": options.label,
        "url": url,
        "duration_seconds": round(time.monotonic() - started, 1),
        "runs": by_run,
    }
    (RESULTS / f"{options.label}.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print_summary(results)
    empty = [key for key, run in by_run.items() if not run["scenarios"]]
    if empty:
        print(f"no results from {', '.join(empty)}: see {logs}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def _given(url: str) -> Iterator[str]:
    yield url


if __name__ == "__main__":
    sys.exit(main())
