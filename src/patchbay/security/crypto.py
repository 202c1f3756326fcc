"""Authenticated encryption of small JSON blobs (upstream env vars, headers, OAuth secrets).

AES-256-GCM under a key derived with HKDF-SHA256 from the server secret. A token is
``"<kid>:<base64url(nonce | ciphertext+tag)>"``: the key id names the derived key, so
tokens written under an older key stay readable once keys rotate: ``patchbay secrets rotate``
moves to the next key generation derived from the same secret, and a ``Keyring`` also holds
any number of retired secrets. An optional ``context`` is
bound into the tag as associated data: a token copied onto another row fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from patchbay.errors import PatchbayError

_INFO = b"patchbay/config-encryption/v1"
_NONCE_BYTES = 12
# ``patchbay secrets rotate`` moves to the next generation of keys derived from the same secret;
# any generation below this bound still decrypts, so rotating never makes a stored value unreadable.
MAX_GENERATIONS = 1024


class DecryptionError(PatchbayError):
    """A ciphertext could not be opened: unknown key id, wrong secret, tampering or garbage."""

    code = "decryption_failed"


@dataclass(frozen=True)
class _DerivedKey:
    kid: str
    aead: AESGCM


def derive_key(secret: bytes, generation: int = 0) -> bytes:
    """The 256-bit encryption key of one generation for one server secret."""
    info = _INFO if generation == 0 else _INFO + f"/{generation}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def key_id(derived: bytes) -> str:
    """Eight hex characters that name a derived key without revealing it."""
    return hashlib.sha256(derived).hexdigest()[:8]


def _derive(secret: bytes, generation: int = 0) -> _DerivedKey:
    if not secret:
        raise ValueError("encryption secret is empty")
    derived = derive_key(secret, generation)
    return _DerivedKey(kid=key_id(derived), aead=AESGCM(derived))


# sha256(secret) -> kid -> key, for every generation; built once per process on the first need.
_GENERATIONS: dict[bytes, dict[str, _DerivedKey]] = {}


def _every_generation(secret: bytes) -> dict[str, _DerivedKey]:
    tag = hashlib.sha256(secret).digest()
    found = _GENERATIONS.get(tag)
    if found is None:
        found = {}
        for generation in range(MAX_GENERATIONS):
            key = _derive(secret, generation)
            found.setdefault(key.kid, key)
        _GENERATIONS[tag] = found
    return found


class Keyring:
    """The current secret and key generation (used to encrypt) and retired secrets (still accepted to decrypt)."""

    def __init__(self, current: bytes, retired: Iterable[bytes] = (), *, generation: int = 0) -> None:
        if not 0 <= generation < MAX_GENERATIONS:
            raise ValueError(f"key generation must be below {MAX_GENERATIONS}")
        self._secrets = (current, *retired)
        self._current = _derive(current, generation)
        self._by_kid: dict[str, _DerivedKey] = {self._current.kid: self._current}
        for old in retired:
            key = _derive(old)
            self._by_kid.setdefault(key.kid, key)

    @property
    def current_kid(self) -> str:
        return self._current.kid

    def encrypt_json(self, value: Mapping[str, Any], *, context: str = "") -> str:
        """Seal a JSON object; ``context`` must be given again to open it."""
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._current.aead.encrypt(nonce, orjson.dumps(dict(value)), _aad(self._current.kid, context))
        body = base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode("ascii")
        return f"{self._current.kid}:{body}"

    def decrypt_json(self, token: str, *, context: str = "") -> dict[str, Any]:
        """Open a token written by ``encrypt_json`` under any secret of the ring."""
        kid, sep, body = token.partition(":")
        if not sep or not kid or not body:
            raise DecryptionError("encrypted value is malformed")
        key = self._by_kid.get(kid) or self._other_generation(kid)
        if key is None:
            raise DecryptionError(f"encrypted value uses key {kid}, which is not configured (secret changed?)")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError) as exc:
            raise DecryptionError("encrypted value is not valid base64url") from exc
        if len(raw) <= _NONCE_BYTES:
            raise DecryptionError("encrypted value is truncated")
        try:
            plain = key.aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(kid, context))
        except InvalidTag as exc:
            raise DecryptionError("encrypted value failed authentication (tampered or moved)") from exc
        value = orjson.loads(plain)
        if not isinstance(value, dict):
            raise DecryptionError("encrypted value is not a JSON object")
        return value

    def _other_generation(self, kid: str) -> _DerivedKey | None:
        for secret in self._secrets:
            found = _every_generation(secret).get(kid)
            if found is not None:
                return found
        return None

    def needs_reencryption(self, token: str) -> bool:
        """Whether a token was written under a retired secret (rotation rewrites those)."""
        return token.partition(":")[0] != self._current.kid


def _aad(kid: str, context: str) -> bytes:
    return f"{kid}|{context}".encode()


def encrypt_json(value: Mapping[str, Any], secret: bytes, *, context: str = "", generation: int = 0) -> str:
    """Seal a JSON object under ``secret`` (its key of ``generation``)."""
    return Keyring(secret, generation=generation).encrypt_json(value, context=context)


def decrypt_json(token: str, secret: bytes, *, context: str = "") -> dict[str, Any]:
    """Open a token sealed by ``encrypt_json`` under the same secret and context."""
    return Keyring(secret).decrypt_json(token, context=context)


_FINGERPRINT_INFO = b"patchbay/credential-fingerprint/v1"


def fingerprint_key(secret: bytes) -> bytes:
    """The HMAC key of credential fingerprints, apart from every encryption key of ``secret``."""
    return hmac.new(secret, _FINGERPRINT_INFO, hashlib.sha256).digest()


def fingerprint(key: bytes, value: Any) -> str:
    """A keyed hash of a JSON value (sorted keys): names a credential set without revealing it."""
    return hmac.new(key, orjson.dumps(value, option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()[:32]
