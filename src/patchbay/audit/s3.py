"""An S3-compatible object store: AWS Signature Version 4 over the gateway's own HTTP/1.1 client.

Four calls are all the audit trail needs (PUT, GET, DELETE object; HEAD bucket), so a
signer of about a hundred lines replaces an SDK (docs/decisions/0007-s3-client.md has the
measurements). Settings follow the AWS conventions: ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, optional ``AWS_SESSION_TOKEN``, ``AWS_REGION`` (or
``AWS_DEFAULT_REGION``, default us-east-1), and ``AWS_ENDPOINT_URL_S3`` (or
``AWS_ENDPOINT_URL``) for a non-AWS store, which is then addressed path-style.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from patchbay.audit.objects import check_key
from patchbay.errors import InvalidInput, NotFound, PatchbayError
from patchbay.routing.upstream.h1 import URL, H1Error, H1Pool

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_TIMEOUT = 30.0
_CONCURRENCY = 8  # requests in flight per batch of puts or deletes


class ObjectStoreError(PatchbayError):
    """The object store refused a request or could not be reached."""

    code = "object_store_error"


@dataclass(frozen=True)
class S3Config:
    bucket: str
    prefix: str  # "" or ends with "/"
    region: str
    access_key: str
    secret_key: str = ""
    session_token: str | None = None
    endpoint: str | None = None  # scheme://host[:port]; None means AWS

    def __repr__(self) -> str:  # the secret key must not reach a log through a repr
        where = f"bucket={self.bucket!r}, prefix={self.prefix!r}, region={self.region!r}, endpoint={self.endpoint!r}"
        return f"S3Config({where})"


def s3_config(url: str, environ: Mapping[str, str]) -> S3Config:
    """Read ``s3://bucket/prefix`` and the AWS variables; a clear error for what is missing."""
    parts = urlsplit(url)
    bucket = parts.netloc
    if not bucket:
        raise InvalidInput(f"PATCHBAY_OBJECT_STORE_URL: no bucket in {url!r}; use s3://bucket/prefix")
    prefix = parts.path.strip("/")
    access = environ.get("AWS_ACCESS_KEY_ID", "")
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "")
    if not access or not secret:
        raise InvalidInput("an s3:// object store needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    endpoint = environ.get("AWS_ENDPOINT_URL_S3") or environ.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None:
        ep = urlsplit(endpoint)
        if ep.scheme not in ("http", "https") or not ep.netloc:
            raise InvalidInput(f"AWS_ENDPOINT_URL_S3 must be an http(s) URL, not {endpoint!r}")
        endpoint = f"{ep.scheme}://{ep.netloc}"
    return S3Config(
        bucket=bucket,
        prefix=f"{prefix}/" if prefix else "",
        region=environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        access_key=access,
        secret_key=secret,
        session_token=environ.get("AWS_SESSION_TOKEN") or None,
        endpoint=endpoint,
    )


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def sign(
    cfg: S3Config, method: str, host: str, path: str, query: str, payload_sha256: str, now: datetime
) -> dict[str, str]:
    """The headers that authenticate one request (SigV4, service ``s3``, header-based)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    if cfg.session_token:
        headers["x-amz-security-token"] = cfg.session_token
    names = sorted(headers)
    signed = ";".join(names)
    canonical = "\n".join(
        [method, path, query, *(f"{n}:{headers[n].strip()}" for n in names), "", signed, payload_sha256]
    )
    scope = f"{day}/{cfg.region}/s3/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{cfg.secret_key}".encode(), day), cfg.region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={cfg.access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    del headers["host"]  # the HTTP client writes Host itself, from the URL
    return headers


class S3ObjectStore:
    """Objects in one bucket under one prefix."""

    def __init__(self, cfg: S3Config, *, pool: H1Pool | None = None) -> None:
        self.cfg = cfg
        self._pool = pool or H1Pool(max_per_origin=16, connect_timeout=10.0)
        if cfg.endpoint is not None:
            self._origin = cfg.endpoint
            self._base_path = f"/{quote(cfg.bucket, safe='')}/"
        else:
            self._origin = f"https://{cfg.bucket}.s3.{cfg.region}.amazonaws.com"
            self._base_path = "/"
        self._host = urlsplit(self._origin).netloc

    @property
    def location(self) -> str:
        where = f" at {self.cfg.endpoint}" if self.cfg.endpoint else ""
        return f"s3://{self.cfg.bucket}/{self.cfg.prefix}{where}"

    async def _call(
        self, method: str, key: str | None, body: bytes = b"", extra: Mapping[str, str] | None = None
    ) -> tuple[int, bytes]:
        path = self._base_path + (quote(self.cfg.prefix + check_key(key), safe="/~") if key is not None else "")
        if key is None:
            path = path.rstrip("/") or "/"
        digest = hashlib.sha256(body).hexdigest() if body else _EMPTY_SHA256
        headers = sign(self.cfg, method, self._host, path, "", digest, datetime.now(UTC))
        if extra:
            headers.update(extra)
        try:
            async with asyncio.timeout(_TIMEOUT):
                response = await self._pool.request(method, URL(self._origin + path), headers, body)
                data = await response.read()
        except (H1Error, OSError, TimeoutError) as exc:
            raise ObjectStoreError(f"object store {self.location} unreachable: {type(exc).__name__}: {exc}") from exc
        return response.status, data

    def _fail(self, what: str, status: int, data: bytes) -> ObjectStoreError:
        code = _xml_field(data, "Code") or f"HTTP {status}"
        return ObjectStoreError(f"object store {self.location}: {what} failed: {code}")

    async def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        status, body = await self._call("PUT", key, data, {"content-type": content_type})
        if status != 200:
            raise self._fail(f"PUT {key}", status, body)

    async def put_many(self, items: Sequence[tuple[str, bytes]], *, content_type: str) -> list[Exception | None]:
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(key: str, data: bytes) -> Exception | None:
            async with gate:
                try:
                    await self.put(key, data, content_type=content_type)
                except (ObjectStoreError, InvalidInput) as exc:
                    return exc
            return None

        return list(await asyncio.gather(*(one(key, data) for key, data in items)))

    async def get(self, key: str) -> bytes:
        status, body = await self._call("GET", key)
        if status == 404:
            raise NotFound(f"no stored object {key!r}")
        if status != 200:
            raise self._fail(f"GET {key}", status, body)
        return body

    async def delete(self, keys: Sequence[str]) -> None:
        # DeleteObjects would batch these, but needs Content-MD5 handling some stores get wrong;
        # a few concurrent DELETEs on one keep-alive pool are plenty for retention.
        gate = asyncio.Semaphore(_CONCURRENCY)

        async def one(key: str) -> None:
            async with gate:
                status, body = await self._call("DELETE", key)
            if status not in (200, 204, 404):
                raise self._fail(f"DELETE {key}", status, body)

        results = await asyncio.gather(*(one(key) for key in keys), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def ping(self) -> None:
        status, body = await self._call("HEAD", None)
        if status != 200:
            raise self._fail(f"HEAD bucket {self.cfg.bucket}", status, body)

    async def aclose(self) -> None:
        await self._pool.aclose()


def _xml_field(data: bytes, name: str) -> str | None:
    text = data.decode("utf-8", "replace")
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>")
    return text[start + len(name) + 2 : end] if 0 <= start < end else None
