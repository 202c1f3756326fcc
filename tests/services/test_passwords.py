from __future__ import annotations

from patchbay.security.passwords import hash_password, hash_password_scrypt, needs_rehash, verify_password


def test_new_passwords_are_hashed_with_argon2id() -> None:
    encoded = hash_password("correct horse battery")
    assert encoded.startswith("$argon2id$")
    assert "m=19456,t=2,p=1" in encoded
    assert "correct horse" not in encoded
    assert verify_password("correct horse battery", encoded)
    assert not needs_rehash(encoded)


def test_wrong_password_does_not_verify() -> None:
    assert not verify_password("wrong", hash_password("correct horse battery"))


def test_hashes_are_salted() -> None:
    assert hash_password("same password") != hash_password("same password")


def test_old_scrypt_hashes_still_verify_and_ask_for_a_rehash() -> None:
    old = hash_password_scrypt("correct horse battery", salt=b"0123456789abcdef")
    assert verify_password("correct horse battery", old)
    assert not verify_password("wrong", old)
    assert needs_rehash(old)


def test_malformed_or_hostile_hashes_never_verify() -> None:
    assert not verify_password("x", "")
    assert not verify_password("x", "argon2id$v=19$...")
    assert not verify_password("x", "$argon2id$v=19$m=1,t=1,p=1$garbage")
    assert not verify_password("x", "scrypt$a$b$c$d$e")
    assert not verify_password("x", "scrypt$1073741824$8$1$AAAA$AAAA")
