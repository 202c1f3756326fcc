"""Refuse passwords that an attacker tries first: the most common ones, and near-trivial ones.

The list is short on purpose: it holds the passwords that top every published breach
ranking (and their obvious variants are caught by the other rules), not a corpus.
"""

from __future__ import annotations

_COMMON = frozenset(
    """
    password password1 password12 password123 passw0rd p@ssw0rd p@ssword 12345678 123456789 1234567890
    0123456789 87654321 11111111 00000000 qwertyui qwertyuiop qwerty12 qwerty123 qwerty1234 1q2w3e4r
    1q2w3e4r5t 1qaz2wsx zaq12wsx asdfghjk asdfghjkl abcd1234 abc12345 abcdefgh iloveyou iloveyou1 sunshine
    princess football baseball welcome1 welcome123 letmein1 letmein123 trustno1 superman batman123
    starwars dragon123 monkey123 master123 shadow123 michael1 jennifer charlie1 computer whatever
    changeme changeme123 admin123 administrator adminadmin rootroot secret123 test1234 testtest
    """.split()  # noqa: SIM905 - a word list reads better as words
)
_MIN_DISTINCT = 4


def password_weakness(password: str, *, email: str | None = None) -> str | None:
    """Why ``password`` is too easy to guess, or None when it is acceptable."""
    lowered = password.lower()
    if lowered in _COMMON or lowered.rstrip("!.1") in _COMMON:
        return "password is one of the most commonly used passwords; choose another"
    if len(set(password)) < _MIN_DISTINCT:
        return f"password must use at least {_MIN_DISTINCT} different characters"
    if email:
        local = email.lower().split("@", 1)[0]
        if lowered in {email.lower(), local} or (len(local) >= 4 and lowered.startswith(local)):
            return "password must not be based on the email address"
    return None
