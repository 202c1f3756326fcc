"""CPU that payload capture adds per call under a busy event loop, in one process (decision 0015).

Each iteration stands in for one proxied call: some Python work and a socket round trip on the
event loop, then (unless ``--via off``) one payload submitted to the real ``PayloadWriter`` on a
local folder. Printed per iteration: the event loop thread's CPU and the whole process's (writer
thread included). ``--via thread`` forces the store's writer thread (the design before 0015) by
making every folder count as slow; ``--via loop`` is the default behaviour.

    .venv/bin/python bench/capture_cpu.py --repeat 4                     # loop, thread, off; best of 4
    .venv/bin/python bench/capture_cpu.py --dir /dev/shm/capture-bench   # tmpfs: no ext4 noise

Run the modes alternately and read the best of several: the box is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = (
    b'{"jsonrpc":"2.0","id":17,"method":"tools/call","params":{"name":"echo__echo",'
    b'"arguments":{"text":"hello world, this is a payload of some length"}}}'
)
RESPONSE = (
    b'{"jsonrpc":"2.0","id":17,"result":{"content":[{"type":"text",'
    b'"text":"hello world, this is a payload of some length"}],"isError":false}}'
)


class _Audit:
    def submit_nowait(self, event: object) -> bool:
        return True

    async def submit(self, event: object) -> None:
        return None


def _work() -> int:
    total = 0
    for i in range(1500):
        total += i * i
    return total


async def _measure(via: str, root: Path, calls: int) -> tuple[float, float]:
    from patchbay.audit import payloads
    from patchbay.audit.events import fresh
    from patchbay.audit.objects import LocalObjectStore

    if via == "thread":
        payloads._SLOW_WRITE = 0.0  # type: ignore[attr-defined]
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    store = LocalObjectStore(root)

    async def phase(n: int) -> None:
        # Closing the writer stores what is queued: its work is counted in the phase.
        writer = payloads.PayloadWriter(store, _Audit(), cap=262_144)  # type: ignore[arg-type]
        await writer.start()
        for _ in range(n):
            _work()
            await loop.sock_sendall(a, b"ping" * 50)
            await loop.sock_recv(b, 4096)
            if via != "off":
                event = fresh(method="tools/call", tool_name="echo__echo", org_id="o", server_id="s")
                await writer.submit(event, payloads.Captured(REQUEST, RESPONSE, len(RESPONSE), "application/json"))
        await writer.aclose()

    await phase(500)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    thread0, all0 = time.thread_time(), usage.ru_utime + usage.ru_stime
    await phase(calls)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    thread1, all1 = time.thread_time(), usage.ru_utime + usage.ru_stime
    await store.aclose()
    return (thread1 - thread0) / calls, (all1 - all0) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--via", choices=["loop", "thread", "off"], help="one mode, in this process")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="alternating runs of each mode (best is printed)")
    parser.add_argument("--dir", type=Path, default=None, help="where the payload folder goes (default: a temp dir)")
    args = parser.parse_args()
    if args.via is not None:
        root = (args.dir or Path(tempfile.gettempdir())) / f"capture-cpu-{args.via}"
        shutil.rmtree(root, ignore_errors=True)
        main_s, all_s = asyncio.run(_measure(args.via, root, args.calls))
        shutil.rmtree(root, ignore_errors=True)
        print(f"{main_s * 1e6:.1f} {all_s * 1e6:.1f}")
        return
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for via in ("loop", "thread", "off"):
            cmd = [sys.executable, __file__, "--via", via, "--calls", str(args.calls)]
            if args.dir is not None:
                cmd += ["--dir", str(args.dir)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
            loop_us, all_us = float(out[0]), float(out[1])
            if via not in best or all_us < best[via][1]:
                best[via] = (loop_us, all_us)
    off = best["off"][1]
    print(f"CPU per call, best of {args.repeat} (us): event loop thread / whole process / capture's share")
    for via, (loop_us, all_us) in best.items():
        print(f"  {via:6s} {loop_us:7.1f} {all_us:7.1f} {all_us - off:+7.1f}")


if __name__ == "__main__":
    main()
