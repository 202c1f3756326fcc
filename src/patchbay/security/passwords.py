"""Password hashing: Argon2id for new hashes; scrypt hashes from earlier versions still verify.

The encoded form names its algorithm and parameters, so ``verify_password`` accepts
both, and ``needs_rehash`` tells the login path to replace an old hash with Argon2id.
The Argon2id parameters are OWASP's first recommended set (19 MiB, 2 passes, 1 lane):
affordable on a small shared machine, far beyond what a GPU farm enjoys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)

_SCRYPT = "scrypt"
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    """An Argon2id hash (PHC string) for a new password."""
    return _HASHER.hash(password)


def verify_password(password: str, encoded: str) -> bool:
    """Whether ``password`` matches ``encoded``; malformed or unknown hashes never match."""
    if encoded.startswith("$argon2id$"):
        try:
            return _HASHER.verify(encoded, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
    if encoded.startswith(_SCRYPT + "$"):
        return _verify_scrypt(password, encoded)
    return False


def needs_rehash(encoded: str) -> bool:
    """Whether a (verified) hash should be replaced: not Argon2id, or weaker than today's parameters."""
    if not encoded.startswith("$argon2id$"):
        return True
    try:
        return _HASHER.check_needs_rehash(encoded)
    except InvalidHashError:
        return True


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password_scrypt(password: str, *, salt: bytes) -> str:
    """The legacy ``scrypt$n$r$p$salt$hash`` form (kept so tests can plant old hashes)."""
    n, r, p = 2**14, 8, 1
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_SCRYPT_MAXMEM)
    return f"{_SCRYPT}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _verify_scrypt(password: str, encoded: str) -> bool:
    parts = encoded.split("$")
    if len(parts) != 6:
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
        actual = hashlib.scrypt(
            password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=_SCRYPT_MAXMEM * 4
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
