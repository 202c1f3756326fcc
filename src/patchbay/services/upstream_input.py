"""What it takes to reach an upstream, as typed by a person, checked before anything connects."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import get_args
from urllib.parse import urlsplit, urlunsplit

from patchbay.errors import InvalidInput
from patchbay.routing.upstream.base import Transport, UpstreamSpec

TRANSPORTS: tuple[Transport, ...] = get_args(Transport)
MAX_NAME = 200
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# Headers the transport itself owns; letting a config set them breaks or spoofs the protocol.
_RESERVED_HEADERS = frozenset(
    {
        "accept",
        "connection",
        "content-length",
        "content-type",
        "host",
        "last-event-id",
        "mcp-protocol-version",
        "mcp-session-id",
        "transfer-encoding",
    }
)


@dataclass(frozen=True)
class UpstreamInput:
    """One upstream to add: a local command (stdio) or a URL (streamable_http / sse)."""

    name: str
    transport: Transport
    command: tuple[str, ...] | None = None
    url: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    def spec(self, key: str = "discovery") -> UpstreamSpec:
        """How to connect to it, for discovery before anything is stored."""
        return UpstreamSpec(
            key=key,
            name=self.name,
            transport=self.transport,
            command=self.command or (),
            env=dict(self.env),
            url=self.url,
            headers=dict(self.headers),
        )


def parse_transport(value: str) -> Transport:
    """A transport name (``streamable-http`` is accepted too), or InvalidInput."""
    normalised = value.strip().lower().replace("-", "_")
    for transport in TRANSPORTS:
        if transport == normalised:
            return transport
    raise InvalidInput(f"unknown transport {value!r}; use one of {', '.join(TRANSPORTS)}")


def check_upstream(
    *,
    name: str,
    transport: str,
    command: Sequence[str] | None,
    url: str | None,
    env: Mapping[str, str],
    headers: Mapping[str, str],
) -> UpstreamInput:
    """A validated ``UpstreamInput``, or InvalidInput naming the first problem."""
    clean_name = name.strip()
    if not clean_name:
        raise InvalidInput("upstream name is empty")
    if len(clean_name) > MAX_NAME:
        raise InvalidInput(f"upstream name is longer than {MAX_NAME} characters")
    kind = parse_transport(transport)
    if kind == "stdio":
        if url is not None:
            raise InvalidInput(f"upstream {clean_name}: a stdio upstream takes a command, not a URL")
        if not command or not command[0].strip():
            raise InvalidInput(f"upstream {clean_name}: a stdio upstream needs a command")
        if any("\x00" in part for part in command):
            raise InvalidInput(f"upstream {clean_name}: the command contains a NUL character")
        return UpstreamInput(
            name=clean_name,
            transport=kind,
            command=tuple(command),
            env=check_env(env, where=clean_name),
            headers=_no_headers(headers, where=clean_name),
        )
    if command:
        raise InvalidInput(f"upstream {clean_name}: a {kind} upstream takes a URL, not a command")
    if url is None:
        raise InvalidInput(f"upstream {clean_name}: a {kind} upstream needs a URL")
    return UpstreamInput(
        name=clean_name,
        transport=kind,
        url=check_url(url, where=clean_name),
        env=check_env(env, where=clean_name),
        headers=check_headers(headers, where=clean_name),
    )


def check_url(url: str, *, where: str) -> str:
    """An http(s) URL with a host, or InvalidInput that does not echo its secrets."""
    value = url.strip()
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InvalidInput(f"upstream {where}: {redact_url(value)} is not a valid URL") from exc
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise InvalidInput(f"upstream {where}: the URL must be http:// or https:// with a host")
    return value


def check_env(env: Mapping[str, str], *, where: str) -> dict[str, str]:
    """Environment variable names and values a process can take, or InvalidInput."""
    for key, value in env.items():
        if _ENV_NAME.fullmatch(key) is None:
            raise InvalidInput(f"upstream {where}: {key!r} is not a valid environment variable name")
        if "\x00" in value:
            raise InvalidInput(f"upstream {where}: environment variable {key} contains a NUL character")
    return dict(env)


def check_headers(headers: Mapping[str, str], *, where: str) -> dict[str, str]:
    """Header names and values HTTP can carry, minus those the transport owns."""
    seen: set[str] = set()
    for key, value in headers.items():
        if _HEADER_NAME.fullmatch(key) is None:
            raise InvalidInput(f"upstream {where}: {key!r} is not a valid HTTP header name")
        lower = key.lower()
        if lower in _RESERVED_HEADERS:
            raise InvalidInput(f"upstream {where}: header {key} is set by the transport itself")
        if lower in seen:
            raise InvalidInput(f"upstream {where}: header {key} is given twice")
        seen.add(lower)
        if any(ch in value for ch in "\r\n\x00"):
            raise InvalidInput(f"upstream {where}: header {key} contains a line break or NUL")
    return dict(headers)


def _no_headers(headers: Mapping[str, str], *, where: str) -> dict[str, str]:
    if headers:
        raise InvalidInput(f"upstream {where}: HTTP headers only apply to URL upstreams")
    return {}


def redact_url(url: str) -> str:
    """A URL fit for output: no password, no query values (either may carry a token)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else f"{parts.username}@{netloc}"
    query = "&".join(f"{pair.split('=', 1)[0]}=***" for pair in parts.query.split("&") if pair)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
