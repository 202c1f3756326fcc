"""The key hash is exactly HMAC-SHA256 (RFC 2104) under the server secret, whatever the secret's length."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from patchbay.auth.keys import generate_key, hash_key


@pytest.mark.parametrize("secret_length", [0, 1, 32, 63, 64, 65, 200])
def test_key_hash_equals_hmac_sha256(secret_length: int) -> None:
    server_secret = bytes(range(256))[:secret_length] if secret_length <= 256 else b""
    for raw in ("pb_" + "a" * 43, "pb_é-unicode", ""):
        expected = hmac.new(server_secret, raw.encode(), hashlib.sha256).hexdigest()
        assert hash_key(raw, server_secret) == expected
        assert hash_key(raw, server_secret) == expected  # again, from the cached pads


def test_different_server_secrets_give_different_hashes() -> None:
    key = generate_key(b"one" * 11)
    assert key.secret_hash == hash_key(key.secret, b"one" * 11)
    assert hash_key(key.secret, b"two" * 11) != key.secret_hash
