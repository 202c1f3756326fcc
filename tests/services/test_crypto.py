from __future__ import annotations

import pytest

from patchbay.security.crypto import DecryptionError, Keyring, decrypt_json, encrypt_json

SECRET = b"server-secret-0123456789abcdef"
OTHER = b"another-secret-0123456789abcdef"


def test_round_trip_returns_the_same_object() -> None:
    value = {"env": {"API_KEY": "s3cr3t"}, "headers": {"Authorization": "Bearer x"}}
    assert decrypt_json(encrypt_json(value, SECRET), SECRET) == value


def test_token_is_tagged_with_key_id_and_hides_the_plaintext() -> None:
    token = encrypt_json({"password": "hunter2"}, SECRET)
    kid, _, body = token.partition(":")
    assert kid == Keyring(SECRET).current_kid
    assert len(kid) == 8
    assert "hunter2" not in token
    assert "=" not in body


def test_same_value_encrypts_differently_each_time() -> None:
    assert encrypt_json({"a": 1}, SECRET) != encrypt_json({"a": 1}, SECRET)


def test_wrong_secret_is_refused_with_a_clear_error() -> None:
    token = encrypt_json({"a": 1}, SECRET)
    with pytest.raises(DecryptionError, match="not configured"):
        decrypt_json(token, OTHER)


def test_tampered_ciphertext_fails_authentication() -> None:
    token = encrypt_json({"a": 1}, SECRET)
    kid, _, body = token.partition(":")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    with pytest.raises(DecryptionError, match="authentication"):
        decrypt_json(f"{kid}:{flipped}", SECRET)


def test_ciphertext_moved_to_another_context_does_not_open() -> None:
    token = encrypt_json({"a": 1}, SECRET, context="template_config:A")
    assert decrypt_json(token, SECRET, context="template_config:A") == {"a": 1}
    with pytest.raises(DecryptionError):
        decrypt_json(token, SECRET, context="template_config:B")


@pytest.mark.parametrize("token", ["", "nocolon", "abcd1234:", "abcd1234:!!!", "abcd1234:AAAA"])
def test_malformed_tokens_are_refused(token: str) -> None:
    ring = Keyring(SECRET)
    bad = token.replace("abcd1234", ring.current_kid)
    with pytest.raises(DecryptionError):
        ring.decrypt_json(bad)


def test_keyring_reads_tokens_of_retired_secrets_and_writes_with_the_current_one() -> None:
    old_token = encrypt_json({"a": 1}, OTHER)
    ring = Keyring(SECRET, retired=[OTHER])
    assert ring.decrypt_json(old_token) == {"a": 1}
    assert ring.needs_reencryption(old_token)
    assert not ring.needs_reencryption(ring.encrypt_json({"a": 1}))
