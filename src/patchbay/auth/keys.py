"""API key material: generation, keyed hashing, and recognising a key by its prefix.

Keys carry 256 bits of randomness, so a slow password hash buys nothing: an
HMAC-SHA256 under the server secret is enough to make a stolen table useless
and costs microseconds per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

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
    return hmac.new(server_secret, secret.encode(), hashlib.sha256).hexdigest()


def looks_like_key(value: str, *, kind: str = KEY_PREFIX) -> bool:
    return value.startswith(kind) and 20 <= len(value) <= 200 and value.isascii()


def redact(secret: str) -> str:
    """What may appear in a log: the prefix only."""
    return secret[:_PREFIX_LEN] + "…" if len(secret) > _PREFIX_LEN else "…"
