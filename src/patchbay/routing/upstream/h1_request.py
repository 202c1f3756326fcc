"""What the HTTP/1.1 client writes: URLs parsed once, and requests encoded with one join."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Final, TypeAlias
from urllib.parse import quote, urlsplit

Headers: TypeAlias = Mapping[str, str] | list[tuple[bytes, bytes]]

_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# What quote() must leave alone in a request target: RFC 3986 reserved characters and '%'.
_TARGET_SAFE: Final = "!#$%&'()*+,/:;=?@[]~"


class URL:
    """An http(s) URL parsed once: origin, request target and the fixed part of the request head."""

    __slots__ = (
        "host",
        "host_header",
        "key",
        "origin",
        "port",
        "raw",
        "scheme",
        "tail",
        "tail_bytes",
        "target",
        "tls",
    )

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"not an http(s) URL: {url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError(f"credentials in URLs are not supported, send a header instead: {url!r}")
        host = parts.hostname
        if not host:
            raise ValueError(f"URL has no host: {url!r}")
        if not host.isascii():
            host = host.encode("idna").decode("ascii")
        if not host.isprintable() or " " in host:
            raise ValueError(f"URL has an invalid host: {url!r}")
        port = parts.port or _DEFAULT_PORTS[scheme]
        target = quote(parts.path or "/", safe=_TARGET_SAFE)
        if parts.query:
            target += "?" + quote(parts.query, safe=_TARGET_SAFE)
        named = f"[{host}]" if ":" in host else host
        self.raw = url
        self.scheme = scheme
        self.tls = scheme == "https"
        self.host = host
        self.port = port
        self.target = target
        self.host_header = named if port == _DEFAULT_PORTS[scheme] else f"{named}:{port}"
        self.origin = f"{named}:{port}"  # for messages
        self.key = f"{scheme}://{named}:{port}"  # a str caches its hash: a cheap pool key
        # The request line after the method, and the Host header.
        self.tail = f" {target} HTTP/1.1\r\nhost: {self.host_header}\r\n"
        self.tail_bytes = self.tail.encode("ascii")

    def __str__(self) -> str:
        return self.raw

    def __repr__(self) -> str:
        return f"URL({self.raw!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, URL) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)


class EncodedHeaders(Mapping[str, str]):
    """Header fields checked and encoded once, for a caller that sends the same ones on every request.

    A connection to an upstream sends the same few headers with every message; joining and
    checking them again per request was a visible part of a proxied call.
    """

    __slots__ = ("_fields", "lines")

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._fields = dict(headers)
        text = "".join(f"{name}: {value}\r\n" for name, value in self._fields.items())
        try:
            lines = text.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("HTTP header names and values must be Latin-1 text") from None
        if lines.count(b"\n") != len(self._fields) or lines.count(b"\r") != len(self._fields):
            raise ValueError("HTTP header names and values must not contain CR or LF")
        self.lines = lines

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)


def encode_request(method: str, url: URL, headers: Headers, body: bytes) -> bytes:
    """The request's bytes: request line, Host, the caller's headers, Content-Length, body."""
    with_length = bool(body) or method not in _NO_BODY_METHODS
    if isinstance(headers, EncodedHeaders) and method.isalpha():
        # The fields were checked when encoded, the URL when parsed.
        length = b"content-length: %d\r\n\r\n" % len(body) if with_length else b"\r\n"
        return b"".join((method.encode("ascii"), url.tail_bytes, headers.lines, length, body))
    if isinstance(headers, list):
        raw = [method.encode("ascii"), url.tail_bytes]
        for raw_name, raw_value in headers:
            raw += (raw_name, b": ", raw_value, b"\r\n")
        if with_length:
            raw += (b"content-length: ", str(len(body)).encode("ascii"), b"\r\n")
        raw += (b"\r\n", body)
        data = b"".join(raw)
        head_end = len(data) - len(body)
    else:
        text = [method, url.tail]
        for name, value in headers.items():
            text += (name, ": ", value, "\r\n")
        if with_length:
            text += ("content-length: ", str(len(body)), "\r\n")
        text.append("\r\n")
        try:
            head = "".join(text).encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("HTTP header names and values must be Latin-1 text") from None
        data = head + body if body else head
        head_end = len(head)
    # Exactly one line per header: a CR or LF inside a name or value would smuggle in a header.
    lines = 3 + len(headers) + with_length
    if data.count(b"\n", 0, head_end) != lines or data.count(b"\r", 0, head_end) != lines:
        raise ValueError("HTTP header names and values must not contain CR or LF")
    return data
