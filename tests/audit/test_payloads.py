"""Request and response bodies: redacted gzip JSON in the object store, capped, switchable per server."""

from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.audit.payloads import decode_payload
from patchbay.audit.redact import REDACTED, redact
from patchbay.services.orgs import ensure_default_org
from patchbay.services.servers import get_server, set_payload_capture
from patchbay.settings import Settings
from patchbay.store.models import AuditRecord
from tests.audit.conftest import S3_ENV, boto_client
from tests.fixtures.servers import stdio_command
from tests.harness import Upstream, add_upstreams, make_key, make_server, modern_tool_call, running_gateway

pytestmark = pytest.mark.anyio

# Planted secrets: none of them may reach a stored payload or a log line.
CANARY_KEY = "pb_CANARYcanary0123456789abcdefghijklmnopqrstu"
CANARY_TOKEN = "canary-field-secret-7f3a9c"
CANARY_BEARER = "canaryBearerTokenValue0123456789"
CANARY_AWS = "AKIACANARY0123456789"
CANARY_JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJlY2FuYXJ5"
CANARIES = [CANARY_KEY, CANARY_TOKEN, CANARY_BEARER, CANARY_AWS, CANARY_JWT]
KEY_SHAPE = re.compile(r"^logs/\d{4}/\d{2}/\d{2}/[0-9a-f]{32}/[0-9a-f]{32}/[0-9a-f]{32}\.json\.gz$")


async def _setup(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> str:
    await add_upstreams(sessionmaker, settings, [Upstream(name="fx", command=stdio_command())])
    await make_server(sessionmaker, name="main", upstreams=["fx"])
    return await make_key(sessionmaker, settings, server="main")


async def _calls(sessionmaker: async_sessionmaker[AsyncSession]) -> list[AuditRecord]:
    async with sessionmaker() as session:
        query = select(AuditRecord).where(AuditRecord.method == "tools/call").order_by(AuditRecord.id)
        return list((await session.scalars(query)).all())


def _canary_call(key: str) -> dict[str, object]:
    arguments = {
        "text": f"here is {CANARY_KEY} and Bearer {CANARY_BEARER} and {CANARY_AWS} and {CANARY_JWT}",
        "client_secret": CANARY_TOKEN,
    }
    return modern_tool_call(key, "fx__echo", arguments)


async def test_a_call_leaves_a_redacted_gzip_payload_under_its_dated_key(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    key = await _setup(settings, sessionmaker)
    caplog.set_level(logging.DEBUG)
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        answer = await http.post("/mcp", **_canary_call(key))  # type: ignore[arg-type]
        assert CANARY_KEY in answer.text  # the caller gets its answer unchanged
    (record,) = await _calls(sessionmaker)
    assert record.payload_key is not None
    assert KEY_SHAPE.match(record.payload_key)
    assert record.payload_key.startswith(f"logs/{record.created_at:%Y/%m/%d}/{record.org_id}/{record.server_id}/")
    assert record.payload_key.endswith(f"/{record.id}.json.gz")
    assert record.payload_stored_at is not None
    stored = (settings.objects_dir / record.payload_key).read_bytes()
    raw = gzip.decompress(stored).decode()
    assert not [c for c in CANARIES if c in raw]
    document = decode_payload(stored)
    assert document["record_id"] == record.id
    assert document["tool"] == "fx__echo"
    assert document["request"]["params"]["arguments"]["client_secret"] == REDACTED
    assert document["request"]["params"]["name"] == "fx__echo"
    assert "here is" in document["response"]["result"]["content"][0]["text"]
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert not [c for c in (CANARY_KEY, CANARY_TOKEN, CANARY_BEARER) if c in logged]


async def test_a_server_with_capture_off_stores_no_payload_but_keeps_the_record(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await _setup(settings, sessionmaker)
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        server = await get_server(session, org_id=org.id, name_or_slug="main")
        await set_payload_capture(session, server=server, enabled=False)
        await session.commit()
    async with running_gateway(settings) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        assert (await http.post("/mcp", **_canary_call(key))).status_code == 200  # type: ignore[arg-type]
    (record,) = await _calls(sessionmaker)
    assert (record.payload_key, record.payload_stored_at) == (None, None)
    assert not list(settings.objects_dir.rglob("*.json.gz"))


async def test_bodies_over_the_size_cap_are_stored_as_a_stub(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    key = await _setup(settings, sessionmaker)
    capped = settings.model_copy(update={"payload_max_bytes": 300})
    async with running_gateway(capped) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        big = modern_tool_call(key, "fx__echo", {"text": "x" * 2000})
        small = modern_tool_call(key, "fx__echo", {"text": "y"})
        for call in (big, small):
            assert (await http.post("/mcp", **call)).status_code == 200  # type: ignore[arg-type]
    first, second = await _calls(sessionmaker)
    assert first.payload_key is not None and second.payload_key is not None
    document = decode_payload((settings.objects_dir / first.payload_key).read_bytes())
    assert document["request"] == {"truncated": True, "bytes": first.bytes_in}
    assert document["response"]["truncated"] is True
    assert document["response"]["bytes"] > 2000
    assert decode_payload((settings.objects_dir / second.payload_key).read_bytes())["request"]["id"] == 1


async def test_payloads_go_to_an_s3_compatible_store_when_configured(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    s3_endpoint: str,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = await _setup(settings, sessionmaker)
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL_S3": s3_endpoint}.items():
        monkeypatch.setenv(name, value)
    on_s3 = settings.model_copy(update={"object_store_url": f"s3://{s3_bucket}/gateway-a"})
    async with running_gateway(on_s3) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        assert (await http.get("/readyz")).json()["checks"]["object_store"] == "ok"
        assert (await http.post("/mcp", **_canary_call(key))).status_code == 200  # type: ignore[arg-type]
    (record,) = await _calls(sessionmaker)
    assert record.payload_key is not None
    stored = boto_client(s3_endpoint).get_object(Bucket=s3_bucket, Key=f"gateway-a/{record.payload_key}")
    raw = gzip.decompress(stored["Body"].read()).decode()
    assert record.id in raw
    assert not [c for c in CANARIES if c in raw]
    assert not (settings.objects_dir).exists() or not list(settings.objects_dir.rglob("*.json.gz"))


async def test_an_unreachable_object_store_costs_the_payload_not_the_record_and_fails_readiness(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = await _setup(settings, sessionmaker)
    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(name, value)
    dead = settings.model_copy(update={"object_store_url": "s3://nowhere/x"})
    async with running_gateway(dead) as url, httpx.AsyncClient(base_url=url, timeout=20) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["object_store"].startswith("error")
        assert (await http.post("/mcp", **_canary_call(key))).status_code == 200  # type: ignore[arg-type]
    (record,) = await _calls(sessionmaker)
    assert (record.status, record.payload_key) == ("ok", None)


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ({"password": "hunter2-canary"}, "hunter2-canary"),
        ({"headers": {"Authorization": "Token abc-canary"}}, "abc-canary"),
        ({"X-API-Key": "xk-canary"}, "xk-canary"),
        ({"refresh_token": "rt-canary"}, "rt-canary"),
        ({"nested": [{"privateKey": "pk-canary"}]}, "pk-canary"),
        ({"text": "token is ghp_" + "A" * 36}, "ghp_" + "A" * 36),
        ({"text": "xoxb-1234567890-canary"}, "xoxb-1234567890-canary"),
        ({"text": "sk-canaryCANARY0123456789abcd"}, "sk-canaryCANARY0123456789abcd"),
        ({"pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIcanary\n-----END RSA PRIVATE KEY-----"}, "MIIcanary"),
        ({"text": "-----BEGIN PRIVATE KEY-----\nMIIcanary2"}, "MIIcanary2"),
        ({f"{CANARY_KEY}": 1}, CANARY_KEY),
        ({"text": f"line one\n{CANARY_KEY}\tAKIACANARY0123456789"}, CANARY_KEY),
        ({"text": f"line one\n{CANARY_KEY}\tAKIACANARY0123456789"}, "AKIACANARY0123456789"),
        ({"text": f'quoted "{CANARY_JWT}"'}, CANARY_JWT),
    ],
)
def test_redaction_removes_every_planted_secret(value: object, secret: str) -> None:
    assert secret not in repr(redact(value))


def test_redaction_keeps_what_is_not_secret() -> None:
    value = {"progressToken": 7, "max_tokens": 100, "nextCursor": "abc", "text": "a plain sentence", "n": [1, 2]}
    assert redact(value) == value


def test_the_objects_folder_sits_in_the_data_dir(settings: Settings) -> None:
    assert settings.objects_dir == Path(settings.home) / "objects"
