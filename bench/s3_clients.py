"""S3 client choice: our SigV4 signer on the gateway's HTTP/1.1 client versus boto3 (botocore) in threads.

Both write the same small gzip payloads (~400 bytes, the size of a typical captured call)
to moto's S3 server on loopback, 8 in flight, alternating rounds. Printed: CPU of this
process per PUT (the gateway pays it), wall time per PUT, and the import time each client adds
to a process that has the gateway loaded. aiobotocore (botocore on aiohttp) is not measured here: it is
not installed in this project, and it would add aiohttp and pin botocore's version range;
boto3-in-threads stands for the SDK family's cost.

    .venv/bin/python bench/s3_clients.py [--puts 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx

from patchbay.audit.s3 import S3Config, S3ObjectStore
from procs import free_port

CREDS = {"aws_access_key_id": "bench", "aws_secret_access_key": "bench-secret", "region_name": "us-east-1"}
BODY = os.urandom(400)
IN_FLIGHT = 8


async def ours(endpoint: str, bucket: str, puts: int, tag: str) -> tuple[float, float]:
    cfg = S3Config(bucket=bucket, prefix="b/", region="us-east-1", access_key="bench", secret_key="bench-secret")
    store = S3ObjectStore(dataclass_replace(cfg, endpoint))
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with gate:
            await store.put(f"{tag}/{i}.json.gz", BODY, content_type="application/gzip")

    try:
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(puts)))
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await store.aclose()


def dataclass_replace(cfg: S3Config, endpoint: str) -> S3Config:
    import dataclasses

    return dataclasses.replace(cfg, endpoint=endpoint)


async def boto(client: Any, pool: ThreadPoolExecutor, bucket: str, puts: int, tag: str) -> tuple[float, float]:
    loop = asyncio.get_running_loop()

    def put(i: int) -> None:
        client.put_object(Bucket=bucket, Key=f"b/{tag}/{i}.json.gz", Body=BODY, ContentType="application/gzip")

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop.run_in_executor(pool, put, i) for i in range(puts)))
    return time.process_time() - cpu, time.perf_counter() - wall


def wait_http(proc: subprocess.Popen[bytes], url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("moto server exited")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("moto server did not start")


def import_seconds(module: str) -> float:
    """What importing ``module`` adds to a process that has the gateway loaded already."""
    code = f"import patchbay.app, time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--puts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    # moto runs in its own process, so the CPU measured here is the client's alone.
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(server, endpoint, timeout=60)
        client = boto3.client("s3", endpoint_url=endpoint, **CREDS)
        client.create_bucket(Bucket="bench")
        totals = {"ours": [0.0, 0.0], "boto3": [0.0, 0.0]}
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            for r in range(1, args.rounds + 1):
                for name in ("ours", "boto3") if r % 2 else ("boto3", "ours"):
                    if name == "ours":
                        cpu, wall = asyncio.run(ours(endpoint, "bench", args.puts, f"o{r}"))
                    else:
                        cpu, wall = asyncio.run(boto(client, pool, "bench", args.puts, f"b{r}"))
                    totals[name][0] += cpu
                    totals[name][1] += wall
                    print(
                        f"round {r} {name:6s}: CPU/put {1e6 * cpu / args.puts:7.0f} us"
                        f"  wall/put {1e6 * wall / args.puts:7.0f} us",
                        flush=True,
                    )
    finally:
        server.terminate()
        server.wait(10)
    n = args.puts * args.rounds
    (oc, ow), (bc, bw) = totals["ours"], totals["boto3"]
    print(f"\nCPU/put  ours {1e6 * oc / n:.0f} us, boto3 {1e6 * bc / n:.0f} us: ours/boto3 = {oc / bc:.2f}")
    print(f"wall/put ours {1e6 * ow / n:.0f} us, boto3 {1e6 * bw / n:.0f} us: ours/boto3 = {ow / bw:.2f}")
    ours_import, boto_import = import_seconds("patchbay.audit.s3"), import_seconds("boto3")
    print(f"import on top of the gateway: ours {ours_import * 1000:.0f} ms, boto3 {boto_import * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
