"""Put the conformance fixture behind a real Patchbay process and run the suites through it.

    python conformance/gateway.py [--transport streamable_http|stdio] [--legacy-upstream] [--only RUN]...

Starts the fixture (HTTP) or lets the gateway spawn it (stdio), provisions a fresh data
dir with the CLI (upstream with plain names, user, server, key), starts `patchbay serve`,
runs `run.py` against `/mcp/k/<key>`, then `compare.py` against a direct run. Exits with
compare's status: non-zero when a scenario passes directly but not through the gateway.
`--legacy-upstream` makes the HTTP fixture refuse 2026-07-28, so the gateway speaks the
handshake era upstream while clients of both eras use it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
BIN = Path(sys.executable).parent
RESULTS = HERE / "results"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "patchbay"), *args], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"patchbay {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout


def _start_fixture(*extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fixtures.conformance_server",
            "--transport",
            "streamable-http",
            "--port",
            "0",
            *extra,
        ],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if line.startswith("READY "):
            return proc, line.split()[1]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("conformance fixture did not start")


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    sys.exit("gateway did not become healthy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--transport", choices=["streamable_http", "stdio"], default="streamable_http")
    parser.add_argument("--legacy-upstream", action="store_true")
    parser.add_argument("--only", action="append", default=[])
    args = parser.parse_args()
    only = [a for run in args.only for a in ("--only", run)]
    label = f"gateway-{args.transport}" + ("-legacy-upstream" if args.legacy_upstream else "")
    processes: list[subprocess.Popen[str]] = []
    with tempfile.TemporaryDirectory(prefix="pb-conformance-") as home:
        env = {**os.environ, "PATCHBAY_HOME": home, "PATCHBAY_SECRET_KEY": "conformance-secret-0123456789abcdef"}
        try:
            if args.transport == "stdio":
                command = f"{sys.executable} -m tests.fixtures.conformance_server --transport stdio"
                _cli(env, "upstream", "add", "conformance", "--command", command)
            else:
                fixture, fixture_url = _start_fixture(*(["--legacy-only"] if args.legacy_upstream else []))
                processes.append(fixture)
                _cli(env, "upstream", "add", "conformance", "--url", fixture_url)
            _cli(env, "user", "create", "conformance@example.com")
            _cli(env, "server", "create", "conformance", "--upstream", "conformance", "--plain-names")
            key = _cli(env, "key", "create", "--server", "conformance", "--user", "conformance@example.com")
            key = key.strip().splitlines()[-1]
            port = _free_port()
            gateway = subprocess.Popen(
                [str(BIN / "patchbay"), "serve", "--port", str(port)], env=env, cwd=REPO, text=True
            )
            processes.append(gateway)
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(base)
            subprocess.run(
                [sys.executable, str(HERE / "run.py"), f"{base}/mcp/k/{key}", label, *only], check=True, cwd=REPO
            )
            direct = RESULTS / "direct.json"
            if not direct.exists():
                subprocess.run([sys.executable, str(HERE / "run.py"), "fixture", "direct", *only], check=True)
            known = ["--known", str(HERE / "legacy-upstream-known.json")] if args.legacy_upstream else []
            return subprocess.run(
                [sys.executable, str(HERE / "compare.py"), str(direct), str(RESULTS / f"{label}.json"), *known],
                check=False,
            ).returncode
        finally:
            for proc in processes:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
