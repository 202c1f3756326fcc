"""An S3-compatible server (moto's server mode) on loopback, and stores for both backends."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from moto.server import ThreadedMotoServer

from patchbay.audit.objects import LocalObjectStore, ObjectStore
from patchbay.audit.s3 import S3Config, S3ObjectStore

S3_ENV = {"AWS_ACCESS_KEY_ID": "testing-access", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """The URL of a moto S3 server on a free loopback port, for the whole run."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def boto_client(endpoint: str) -> Any:
    """An independent S3 client (boto3) to check what our own signer wrote."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_REGION"],
    )


@pytest.fixture
def s3_bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    """A fresh, empty bucket for one test."""
    name = "pb-" + os.urandom(6).hex()
    boto_client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_config(s3_endpoint: str, s3_bucket: str) -> S3Config:
    return S3Config(
        bucket=s3_bucket,
        prefix="audit/",
        region=S3_ENV["AWS_REGION"],
        access_key=S3_ENV["AWS_ACCESS_KEY_ID"],
        secret_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        endpoint=s3_endpoint,
    )


@pytest.fixture(params=["local", "s3"])
async def object_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """Each backend in turn; the same tests run against both."""
    store: ObjectStore
    if request.param == "local":
        store = LocalObjectStore(tmp_path / "objects")
    else:
        store = S3ObjectStore(request.getfixturevalue("s3_config"))
    try:
        yield store
    finally:
        await store.aclose()
