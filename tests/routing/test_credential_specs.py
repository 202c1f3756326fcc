"""One connection per credential set, values opened only when a call needs them, fail closed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from patchbay.errors import UpstreamError
from patchbay.policy.credentials import CredentialChoice
from patchbay.routing.credential_specs import CredentialSpecs, Sealed
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.security.crypto import Keyring, fingerprint_key

SECRET = b"x" * 32
BASE = UpstreamSpec(key="", name="up", transport="stdio", command=("run",), env={"MODE": "prod", "TOKEN": "org"})


class CountingKeyring(Keyring):
    def __init__(self) -> None:
        super().__init__(SECRET)
        self.opened = 0

    def decrypt_json(self, token: str, *, context: str = "") -> dict[str, Any]:
        self.opened += 1
        return super().decrypt_json(token, context=context)


class Key:
    """A key's credential choices, as ``choose_credential`` reads them."""

    def __init__(self, credentials: Mapping[str, CredentialChoice] | None = None, *, shared: bool = False) -> None:
        self.shared = shared
        self.credentials = dict(credentials or {})


def sealed(ring: Keyring, context: str, **env: str) -> Sealed:
    return Sealed(ring.encrypt_json({"env": env}, context=context), context)


def specs(ring: Keyring, org_id: str = "o1") -> CredentialSpecs:
    return CredentialSpecs(
        base=BASE,
        template_id="t1",
        org_id=org_id,
        users={
            "ann": sealed(ring, "u:ann", TOKEN="ann-secret"),
            "bob": sealed(ring, "u:bob", TOKEN="bob-secret"),
            "twin": sealed(ring, "u:twin", TOKEN="ann-secret"),
        },
        shared={"team": sealed(ring, "s:team", TOKEN="team-secret")},
        keyring=ring,
        fp_key=fingerprint_key(SECRET),
    )


def test_equal_credential_sets_share_a_connection_and_different_ones_never_do() -> None:
    creds = specs(Keyring(SECRET))
    ann, bob, twin = (creds.resolve(Key(), user) for user in ("ann", "bob", "twin"))
    assert (ann.spec.env["TOKEN"], bob.spec.env["TOKEN"]) == ("ann-secret", "bob-secret")
    assert ann.spec.env["MODE"] == "prod"  # own values sit on top of the org's
    assert ann.spec.key != bob.spec.key
    assert ann.spec.key == twin.spec.key  # same values: same process
    team = Key({"t1": CredentialChoice("shared", "team")})
    assert creds.resolve(team, "ann").spec.key == creds.resolve(team, "bob").spec.key
    assert creds.resolve(team, "ann").credential == "shared:team"
    assert all(k.startswith("t1:") and "secret" not in k for k in (ann.spec.key, bob.spec.key))
    # Another org with the very same values still gets its own process.
    assert specs(Keyring(SECRET), org_id="o2").resolve(Key(), "ann").spec.key != ann.spec.key


def test_values_are_opened_on_the_first_call_that_needs_them_only() -> None:
    ring = CountingKeyring()
    creds = specs(ring)
    assert ring.opened == 0
    for _ in range(3):
        assert creds.resolve(Key(), "ann").credential == "own"
    assert ring.opened == 1
    # A user without own values calls with the org's, and the audit says so.
    assert creds.resolve(Key(), "nobody").credential == "org"
    assert creds.resolve(Key({"t1": CredentialChoice("org")}), "ann").spec.env["TOKEN"] == "org"
    assert ring.opened == 1


def test_a_shared_key_never_calls_with_its_holders_own_values() -> None:
    creds = specs(Keyring(SECRET))
    assert creds.resolve(Key(shared=True), "ann").credential == "org"
    assert creds.resolve(Key(shared=True), "ann").spec.env["TOKEN"] == "org"


def test_a_missing_shared_credential_fails_closed() -> None:
    creds = specs(Keyring(SECRET))
    with pytest.raises(UpstreamError, match="shared credential 'gone'"):
        creds.resolve(Key({"t1": CredentialChoice("shared", "gone")}), "ann")


def test_a_credential_without_a_required_value_is_refused_by_name() -> None:
    ring = Keyring(SECRET)
    creds = CredentialSpecs(
        base=UpstreamSpec(key="", name="up", transport="stdio", command=("run",), env={"MODE": "prod"}),
        template_id="t1",
        org_id="o1",
        users={"ann": sealed(ring, "u:ann", TOKEN="ann-secret")},
        shared={"team": sealed(ring, "s:team", TOKEN="team-secret"), "empty": sealed(ring, "s:empty", MODE="x")},
        keyring=ring,
        fp_key=fingerprint_key(SECRET),
        required=("TOKEN",),
    )
    assert creds.resolve(Key(), "ann").spec.env["TOKEN"] == "ann-secret"
    assert creds.resolve(Key({"t1": CredentialChoice("shared", "team")}), "bob").credential == "shared:team"
    for key, user in ((Key(), "bob"), (Key({"t1": CredentialChoice("org")}), "ann")):
        with pytest.raises(UpstreamError, match="needs TOKEN"):
            creds.resolve(key, user)
    with pytest.raises(UpstreamError, match="'shared:empty'"):
        creds.resolve(Key({"t1": CredentialChoice("shared", "empty")}), "ann")
