from __future__ import annotations

from patchbay.security.passwords import hash_password, verify_password


def test_password_verifies_against_its_hash() -> None:
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("scrypt$")
    assert "correct horse" not in encoded
    assert verify_password("correct horse battery", encoded)


def test_wrong_password_does_not_verify() -> None:
    assert not verify_password("wrong", hash_password("correct horse battery"))


def test_hashes_are_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_malformed_or_hostile_hashes_never_verify() -> None:
    assert not verify_password("x", "")
    assert not verify_password("x", "argon2id$v=19$...")
    assert not verify_password("x", "scrypt$a$b$c$d$e")
    assert not verify_password("x", "scrypt$1073741824$8$1$AAAA$AAAA")
