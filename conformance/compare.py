"""Fail when a conformance scenario that passes directly does not pass through the gateway.

    python conformance/compare.py conformance/results/direct.json conformance/results/gateway.json [--known FILE]

Both files come from `run.py`. Exits 1 on any regression: a scenario that passed in DIRECT
and failed, or is missing, in GATEWAY (a whole missing suite run counts for each of its
scenarios). Also exits 1 when DIRECT passed nothing, since the comparison would then prove
nothing. Scenarios that pass through the gateway but not directly, and checks that got worse
inside scenarios that still pass (say SUCCESS to WARNING), are printed but do not fail.
`--known FILE` names differences that are explained and expected (a JSON object of
"<run> <scenario>" → reason): they are printed with their reason and do not fail.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUS_RANK = {"FAILURE": 4, "WARNING": 3, "SUCCESS": 2, "INFO": 1, "SKIPPED": 0}


@dataclass(frozen=True)
class Comparison:
    """What changed between two result files, one line per finding."""

    regressions: list[str]
    improvements: list[str]
    degraded_checks: list[str]
    direct_passes: int
    lost: int


def _worse(before: str, after: str | None) -> bool:
    # A check that stopped being reported at all counts as worse only if it had succeeded.
    if after is None:
        return before == "SUCCESS"
    return before == "SUCCESS" and STATUS_RANK.get(after, 4) > STATUS_RANK["SUCCESS"]


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> Comparison:
    """Compare two `run.py` result documents scenario by scenario."""
    regressions: list[str] = []
    improvements: list[str] = []
    degraded: list[str] = []
    direct_passes = lost = 0
    for run_key, direct_run in direct["runs"].items():
        passing = sum(1 for scenario in direct_run["scenarios"].values() if scenario["passed"])
        if run_key not in gateway["runs"]:
            direct_passes += passing
            lost += passing
            if passing:
                regressions.append(f"{run_key}: not run through the gateway ({passing} scenarios pass directly)")
            continue
        gateway_scenarios = gateway["runs"][run_key]["scenarios"]
        for name, before in direct_run["scenarios"].items():
            after = gateway_scenarios.get(name)
            where = f"{run_key} {name}"
            if before["passed"]:
                direct_passes += 1
            if after is None:
                if before["passed"]:
                    lost += 1
                    regressions.append(f"{where}: passes directly, missing through the gateway")
                continue
            if before["passed"] and not after["passed"]:
                lost += 1
                reasons = "; ".join(after["failures"][:3]) or "failed without a check"
                regressions.append(f"{where}: passes directly, fails through the gateway: {reasons}")
            elif not before["passed"] and after["passed"]:
                improvements.append(f"{where}: fails directly, passes through the gateway")
            elif after["passed"]:
                for check, status in before["checks"].items():
                    if _worse(status, after["checks"].get(check)):
                        now = after["checks"].get(check, "not reported")
                        degraded.append(f"{where} {check}: {status} directly, {now} through the gateway")
    return Comparison(regressions, improvements, degraded, direct_passes, lost)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("direct", type=Path, help="results of the run against the fixture itself")
    parser.add_argument("gateway", type=Path, help="results of the run through the gateway")
    parser.add_argument("--known", type=Path, help="JSON: expected differences and why")
    options = parser.parse_args(argv)
    result = compare(json.loads(options.direct.read_text()), json.loads(options.gateway.read_text()))
    known: dict[str, str] = json.loads(options.known.read_text()) if options.known else {}
    explained = [
        f"{line.split(':')[0]}: {known[line.split(':')[0]]}"
        for line in result.regressions
        if line.split(":")[0] in known
    ]
    regressions = [line for line in result.regressions if line.split(":")[0] not in known]
    stale = [where for where in known if not any(line.startswith(f"{where}:") for line in result.regressions)]
    if stale:
        print("Known differences that no longer differ (remove them from the file):")
        print("\n".join(f"  {where}" for where in stale))
    lost = result.lost - len(explained)
    for title, lines in (
        ("Degraded checks (scenario still passes)", result.degraded_checks),
        ("Passes only through the gateway", result.improvements),
        ("Known differences (expected, with the reason)", explained),
        ("REGRESSIONS: pass directly, not through the gateway", regressions),
    ):
        if lines:
            print(f"{title}:")
            print("\n".join(f"  {line}" for line in lines))
    if result.direct_passes == 0:
        print("No scenario passed directly: the comparison proves nothing.", file=sys.stderr)
        return 1
    print(f"{result.direct_passes} scenario runs pass directly; {result.lost} of them do not pass through the gateway.")
    # A closing line in the plain "N passed, N failed" form, for whoever reads only the last line.
    tail = f", {len(explained)} known differences" if explained else ""
    print(f"conformance: {result.direct_passes - result.lost} passed, {lost} failed{tail}")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
