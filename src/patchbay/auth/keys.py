"""API key material: generation, keyed hashing, and recognising a key by its prefix.

Keys carry 256 bits of randomness, so a slow password hash buys nothing: an
HMAC-SHA256 under the server secret is enough to make a stolen table useless
and costs microseconds per request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

KEY_PREFIX = "pb_"
TOOL_KEY_PREFIX = "tk_"  # tool access keys: one tool, scopes execute / read / admin
_PREFIX_LEN = 12  # "pb_" + 9 visible characters identify a key in lists and logs


@dataclass(frozen=True)
class NewKey:
    secret: str
    prefix: str
    secret_hash: str


def generate_key(server_secret: bytes, *, kind: str = KEY_PREFIX) -> NewKey:
    """A fresh key: ``pb_`` + 43 url-safe characters (32 random bytes)."""
    secret = kind + secrets.token_urlsafe(32)
    return NewKey(secret=secret, prefix=secret[:_PREFIX_LEN], secret_hash=hash_key(secret, server_secret))


def hash_key(secret: str, server_secret: bytes) -> str:
    """HMAC-SHA256 of ``secret`` under ``server_secret``, as hex (RFC 2104, equal to ``hmac.new``)."""
    # Every request hashes its key: starting from SHA-256 states already fed the padded server
    # secret costs two copies instead of building an HMAC object (measured 1.5 µs against 3.9 µs).
    inner, outer = _keyed_pads(server_secret)
    digest = inner.copy()
    digest.update(secret.encode())
    final = outer.copy()
    final.update(digest.digest())
    return str(final.hexdigest())


_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))
_PADS: dict[bytes, tuple[Any, Any]] = {}


def _keyed_pads(server_secret: bytes) -> tuple[Any, Any]:
    found = _PADS.get(server_secret)
    if found is None:
        key = server_secret if len(server_secret) <= 64 else hashlib.sha256(server_secret).digest()
        key = key.ljust(64, b"\0")
        found = (hashlib.sha256(key.translate(_IPAD)), hashlib.sha256(key.translate(_OPAD)))
        if len(_PADS) < 8:  # one server secret per process, a few more in tests
            _PADS[server_secret] = found
    return found


def looks_like_key(value: str, *, kind: str = KEY_PREFIX) -> bool:
    return value.startswith(kind) and 20 <= len(value) <= 200 and value.isascii()


def redact(secret: str) -> str:
    """What may appear in a log: the prefix only."""
    return secret[:_PREFIX_LEN] + "…" if len(secret) > _PREFIX_LEN else "…"
