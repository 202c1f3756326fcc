"""Password hashing with scrypt from the standard library.

Argon2id replaces this when accounts grow a login; the encoded form names its
algorithm and parameters, so ``verify_password`` keeps accepting old hashes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

_ALGORITHM = "scrypt"
_N = 2**14
_R = 8
_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` for a new password."""
    salt = os.urandom(_SALT_BYTES)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_HASH_BYTES, maxmem=_MAXMEM)
    return f"{_ALGORITHM}${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; malformed or unknown hashes never match."""
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != _ALGORITHM:
        return False
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, expected = _unb64(parts[4]), _unb64(parts[5])
    except (ValueError, binascii.Error):
        return False
    # Refuse parameters that would let a planted hash exhaust memory or CPU.
    if not (2 <= n <= 2**20 and 1 <= r <= 32 and 1 <= p <= 16) or not expected:
        return False
    try:
        actual = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=_MAXMEM * 4)
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
