"""Both object-store backends keep the same promises; S3 is a real S3-compatible server on loopback."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchbay.audit.objects import LocalObjectStore, ObjectStore, make_object_store
from patchbay.audit.s3 import ObjectStoreError, S3Config, S3ObjectStore, sign
from patchbay.errors import InvalidInput, NotFound
from tests.audit.conftest import S3_ENV, boto_client

pytestmark = pytest.mark.anyio

KEY = "logs/2026/11/23/org/server/0123abcd.json.gz"


async def test_a_stored_object_reads_back_byte_for_byte(object_store: ObjectStore) -> None:
    data = bytes(range(256)) * 300
    await object_store.put(KEY, data, content_type="application/gzip")
    assert await object_store.get(KEY) == data
    await object_store.put(KEY, b"replaced")
    assert await object_store.get(KEY) == b"replaced"


async def test_a_missing_object_is_not_found_and_deleting_it_is_no_error(object_store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await object_store.get("logs/nothing/here.json.gz")
    await object_store.delete(["logs/nothing/here.json.gz"])


async def test_deleted_objects_are_gone_and_others_stay(object_store: ObjectStore) -> None:
    keys = [f"logs/2026/01/0{i}/o/s/r{i}.json.gz" for i in range(1, 6)]
    for key in keys:
        await object_store.put(key, key.encode())
    await object_store.delete(keys[:4])
    for key in keys[:4]:
        with pytest.raises(NotFound):
            await object_store.get(key)
    assert await object_store.get(keys[4]) == keys[4].encode()


@pytest.mark.parametrize(
    "key",
    ["", "/abs/path", "logs/../../etc/passwd", "logs//x", "logs/./x", "a\\b", ".", "..", "logs/..", "logs/x/", "a\0b"],
)
async def test_keys_that_could_escape_the_store_are_refused(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInput):
        await object_store.put(key, b"x")


async def test_a_reachable_store_is_ready(object_store: ObjectStore) -> None:
    await object_store.ping()


async def test_the_local_store_leaves_no_empty_day_folders_after_deleting(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.put(KEY, b"x")
    await store.delete([KEY])
    assert list((tmp_path / "objects").iterdir()) == []


async def test_objects_written_by_our_signer_are_readable_by_another_s3_client(s3_config: S3Config) -> None:
    store = S3ObjectStore(s3_config)
    try:
        await store.put("logs/a b+c/é.json.gz", b"payload", content_type="application/gzip")
    finally:
        await store.aclose()
    assert s3_config.endpoint is not None
    got = boto_client(s3_config.endpoint).get_object(Bucket=s3_config.bucket, Key="audit/logs/a b+c/é.json.gz")
    assert got["Body"].read() == b"payload"
    assert got["ContentType"] == "application/gzip"


def test_our_signature_matches_the_reference_sigv4_implementation(s3_config: S3Config) -> None:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    cfg = dataclasses.replace(s3_config, session_token="session-token-value")
    body = b"some payload"
    digest = hashlib.sha256(body).hexdigest()
    path = "/bucket/audit/logs/a%20b/x.json.gz"
    reference = AWSRequest(
        method="PUT",
        url=f"http://127.0.0.1:9000{path}",
        data=body,
        headers={"x-amz-content-sha256": digest},
    )
    S3SigV4Auth(Credentials(cfg.access_key, cfg.secret_key, cfg.session_token), "s3", cfg.region).add_auth(reference)
    # The reference signs with the current time; sign the same request at that same moment.
    when = datetime.strptime(reference.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    ours = sign(cfg, "PUT", "127.0.0.1:9000", path, "", digest, when)
    assert ours["authorization"] == reference.headers["Authorization"]


async def test_a_refused_request_is_a_clear_error_that_holds_no_secret(s3_config: S3Config) -> None:
    wrong = dataclasses.replace(s3_config, bucket="pb-no-such-bucket", secret_key="not-the-secret-key-at-all")
    store = S3ObjectStore(wrong)
    try:
        with pytest.raises(ObjectStoreError) as caught:
            await store.put(KEY, b"x")
    finally:
        await store.aclose()
    assert "NoSuchBucket" in str(caught.value)
    assert "not-the-secret-key-at-all" not in str(caught.value) + repr(wrong)


async def test_a_missing_bucket_or_a_dead_endpoint_is_not_ready(s3_config: S3Config) -> None:
    for cfg in (
        dataclasses.replace(s3_config, bucket="pb-no-such-bucket"),
        dataclasses.replace(s3_config, endpoint="http://127.0.0.1:9"),
    ):
        store = S3ObjectStore(cfg)
        try:
            with pytest.raises(ObjectStoreError):
                await store.ping()
        finally:
            await store.aclose()


def test_the_object_store_url_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(make_object_store(None, default_root=tmp_path), LocalObjectStore)
    local = make_object_store(f"file://{tmp_path}/objs", default_root=tmp_path)
    assert isinstance(local, LocalObjectStore)
    assert local.root == tmp_path / "objs"
    env = {**S3_ENV, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000/"}
    s3 = make_object_store("s3://bucket/some/prefix/", default_root=tmp_path, environ=env)
    assert isinstance(s3, S3ObjectStore)
    assert (s3.cfg.bucket, s3.cfg.prefix, s3.cfg.endpoint) == ("bucket", "some/prefix/", "http://127.0.0.1:9000")
    assert s3.location == "s3://bucket/some/prefix/ at http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("ftp://x/y", S3_ENV, "file:// or s3://"),
        ("s3:///prefix", S3_ENV, "no bucket"),
        ("s3://bucket", {}, "AWS_ACCESS_KEY_ID"),
        ("s3://bucket", {**S3_ENV, "AWS_ENDPOINT_URL": "minio:9000"}, "http(s) URL"),
        ("file://host/path", S3_ENV, "absolute path"),
    ],
)
def test_a_bad_object_store_url_is_a_clear_error(tmp_path: Path, url: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_object_store(url, default_root=tmp_path, environ=env)
