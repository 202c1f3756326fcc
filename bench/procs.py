"""Child processes for benchmarks: start, wait until they serve, read their CPU time, stop them."""

from __future__ import annotations

import contextlib
import os
import queue
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil


class BenchError(Exception):
    """Something the benchmark needs did not work; the message says what."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    """A process this benchmark started, with its output going to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start(name: str, cmd: Sequence[str], *, log: Path, env: dict[str, str] | None = None) -> Child:
    """Start ``cmd`` with stdout and stderr appended to ``log``."""
    with log.open("ab") as out:
        popen = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env)
    return Child(name, popen, log)


def wait_http(child: Child, url: str, *, timeout: float = 60.0, method: str = "GET") -> int:
    """Poll ``url`` until it answers at all (any HTTP status); fail early if ``child`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if child.popen.poll() is not None:
            code = child.popen.returncode
            raise BenchError(f"{child.name} exited with code {code} before serving {url}:\n{child.tail()}")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() > deadline:
            raise BenchError(f"{child.name} did not answer {url} within {timeout:g} s:\n{child.tail()}")
        time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants (psutil; clock-tick resolution)."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """User and system (kernel) CPU seconds of a process and its live descendants."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    user = system = 0.0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = p.cpu_times()
            user += t.user
            system += t.system
    return user, system


def main_thread_cpu_seconds(pid: int) -> float:
    """User + system CPU of the process's main thread alone (the event loop of an asyncio server)."""
    try:
        for thread in psutil.Process(pid).threads():
            if thread.id == pid:
                return float(thread.user_time + thread.system_time)
    except psutil.NoSuchProcess:
        pass
    return 0.0


def settle(pids: Sequence[int], *, window: float = 0.2, quiet: float = 0.011, limit: float = 5.0) -> None:
    """Wait until the processes are idle, so that work deferred past a phase is counted in it."""
    deadline = time.monotonic() + limit
    last = sum(cpu_seconds(p) for p in pids)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = sum(cpu_seconds(p) for p in pids)
        if now - last <= quiet:
            return
        last = now


def stop(child: Child, *, grace: float = 10.0) -> None:
    """SIGTERM the child (then SIGKILL after ``grace`` seconds) and reap it."""
    if child.popen.poll() is not None:
        return
    child.popen.terminate()
    try:
        child.popen.wait(grace)
    except subprocess.TimeoutExpired:
        child.popen.kill()
        child.popen.wait(5)


@dataclass
class LineReader:
    """Reads a child's stdout lines on a thread, so the driver can wait for one with a timeout."""

    stream: IO[bytes]
    lines: queue.Queue[bytes | None] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.stream:
            self.lines.put(line)
        self.lines.put(None)

    def next(self, timeout: float) -> bytes | None:
        """The next line, or None at end of stream; BenchError on timeout."""
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise BenchError(f"no output within {timeout:g} s") from None


def run(cmd: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
    """Run a command to completion and return its stdout; BenchError with its output if it fails."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, env=env, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:g} s: {' '.join(cmd)}") from None
    except OSError as exc:
        raise BenchError(f"could not run {' '.join(cmd)}: {exc}") from None
    out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    if done.returncode != 0:
        raise BenchError(
            f"exit code {done.returncode}: {' '.join(cmd)}\n--- stdout ---\n{out.strip()}\n"
            f"--- stderr ---\n{err.strip()}"
        )
    return out


def environ(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env
