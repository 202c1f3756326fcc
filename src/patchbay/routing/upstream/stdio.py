"""Upstreams that run as a child process speaking newline-delimited JSON-RPC on stdin/stdout."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque

import orjson

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import NotificationHandler, UpstreamSpec
from patchbay.routing.upstream.protocol import settle
from patchbay.routing.upstream.stream import StreamConnection

logger = logging.getLogger(__name__)

# Inherited from the gateway; everything else a server needs must come from its spec (no secrets leak).
SAFE_ENV_KEYS = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
# A few stderr lines say why a process died; the full story is in its log, not in a client's error.
ERROR_TAIL_LINES = 3
# How long a process that closed its stdout gets to exit on its own before we report it.
EXIT_WAIT = 1.0


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    """A minimal environment for an upstream process with its own variables on top."""
    env = {key: os.environ[key] for key in SAFE_ENV_KEYS if key in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(extra)
    return env


def describe_exit(returncode: int | None) -> str:
    """``exited with code N`` or ``was killed by SIGNAME``."""
    if returncode is None:
        return "stopped answering"
    if returncode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


class StdioConnection(StreamConnection):
    """One upstream child process (in its own process group) and the JSON-RPC session on its pipes."""

    transport = "stdio"

    def __init__(
        self, spec: UpstreamSpec, on_notification: NotificationHandler | None, *, kill_grace: float = 2.0
    ) -> None:
        super().__init__(spec, on_notification)
        self.kill_grace = kill_grace
        self.process: asyncio.subprocess.Process | None = None
        self._stderr_tail: deque[str] = deque(maxlen=ERROR_TAIL_LINES)
        self._stderr_log = logging.getLogger(f"patchbay.upstream.{spec.name}")
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @classmethod
    async def open(
        cls,
        spec: UpstreamSpec,
        *,
        connect_timeout: float,
        on_notification: NotificationHandler | None = None,
        kill_grace: float = 2.0,
    ) -> StdioConnection:
        """Start the process and negotiate the protocol; the process is ended again if that fails."""
        conn = cls(spec, on_notification, kill_grace=kill_grace)
        await conn._start()
        handshake = conn._handshake(min(10.0, connect_timeout / 2), connect_timeout)
        await settle(conn, spec.name, connect_timeout, handshake, conn._hint)
        return conn

    async def _start(self) -> None:
        spec = self.spec
        if not spec.command:
            raise UpstreamError(f"upstream {spec.name!r} has no command to run")
        try:
            self.process = await asyncio.create_subprocess_exec(
                *spec.command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(dict(spec.env)),
                cwd=spec.cwd,
                start_new_session=True,  # its own process group, so closing ends every descendant
                limit=MAX_MESSAGE_BYTES,
            )
        except FileNotFoundError as exc:
            if spec.cwd is not None and exc.filename == spec.cwd:
                raise UpstreamError(f"upstream {spec.name!r}: working directory not found: {spec.cwd}") from None
            raise UpstreamError(f"upstream {spec.name!r}: command not found: {spec.command[0]}") from None
        except PermissionError:
            raise UpstreamError(f"upstream {spec.name!r}: command is not executable: {spec.command[0]}") from None
        except OSError as exc:
            raise UpstreamError(f"upstream {spec.name!r}: could not start {spec.command[0]}: {exc}") from exc
        self._tasks = [asyncio.ensure_future(self._read_stdout()), asyncio.ensure_future(self._read_stderr())]

    async def _write(self, message: JSONObject) -> None:
        if self._error is not None:
            raise self._error
        assert self.process is not None
        assert self.process.stdin is not None
        self.process.stdin.write(orjson.dumps(message, option=orjson.OPT_APPEND_NEWLINE))
        try:
            await self.process.stdin.drain()
        except ConnectionError:
            # The reader notices the exit and fails everything with the exit code and the process's
            # last words: wait for it to say so (it waits for stderr too), then report the same.
            await asyncio.shield(self._stop())
            reader = self._tasks[0]
            if reader is not asyncio.current_task():
                await asyncio.wait([reader], timeout=2 * EXIT_WAIT)
            raise self._error or UpstreamError(f"upstream {self.spec.name!r} closed its stdin") from None

    async def _read_stdout(self) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        stdout = self.process.stdout
        problem: str | None = None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:
                problem = f"sent a message larger than {MAX_MESSAGE_BYTES} bytes"
                break
            if not line:
                break
            try:
                message = orjson.loads(line)
            except orjson.JSONDecodeError:
                if line.strip():
                    text = line[:200].decode("utf-8", "replace").rstrip()
                    self._core.anomaly = f"it wrote non-JSON to stdout: {text!r}"
                    logger.warning("upstream %r %s", self.spec.name, self._core.anomaly)
                continue
            await self._core.dispatch(message)
        if problem is None:
            # Let it exit by itself so its own exit code is what gets reported.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.process.wait()), EXIT_WAIT)
        await asyncio.shield(self._stop())
        if self._error is None:
            # Its last words explain most crashes; stderr ends once the whole group is gone.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._tasks[1]), EXIT_WAIT)
            detail = problem or describe_exit(self.process.returncode)
            tail = " | ".join(line[:200] for line in self._stderr_tail)
            self._mark_dead(UpstreamError(f"upstream {self.spec.name!r} {detail}" + (f": {tail}" if tail else "")))
            logger.warning("%s", self._error)

    async def _read_stderr(self) -> None:
        assert self.process is not None
        assert self.process.stderr is not None
        stderr = self.process.stderr
        buffer = b""
        while chunk := await stderr.read(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                self._stderr_line(line)
            if len(buffer) > 65536:
                self._stderr_line(buffer)
                buffer = b""
        self._stderr_line(buffer)

    def _stderr_line(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            self._stderr_tail.append(text)
            self._stderr_log.info("%s", text)

    def _signal_group(self, sig: int) -> bool:
        """Signal the whole process group; False once nothing in it is left."""
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # exists, but no longer ours to signal (pid reuse is beyond our reach)
        return True

    async def _stop(self) -> None:
        """End the process group once: stdin EOF and SIGTERM, SIGKILL after the grace period, reap."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._terminate())
        await self._stopping

    async def _terminate(self) -> None:
        process = self.process
        assert process is not None
        if process.stdin is not None:
            process.stdin.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.kill_grace
        if self._signal_group(signal.SIGTERM):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(process.wait()), self.kill_grace)
            # The leader may be gone while descendants are still cleaning up.
            # No event tells when a process group empties, so poll briefly.
            while loop.time() < deadline and self._signal_group(0):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            self._signal_group(signal.SIGKILL)
        await process.wait()

    async def aclose(self) -> None:
        """End the process group, reap it and fail whatever was still waiting."""
        self._mark_dead(UpstreamError(f"upstream {self.spec.name!r} connection was closed"))
        if self.process is not None:
            await asyncio.shield(self._stop())
            # Readers end at EOF, which comes once the pipes are gone: only then is the transport
            # closed cleanly. A descendant that escaped the group may hold them open, so bound it.
            _, stuck = await asyncio.wait(self._tasks, timeout=EXIT_WAIT)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._core.aclose()
