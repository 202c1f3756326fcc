"""The connections one upstream of a catalog can call with, one per distinct credential set.

A catalog holds the org's spec and, still sealed, the values each user set for themselves and
each named shared credential of the org. A value is decrypted the first time a call needs it
and remembered with the catalog, so a rebuild costs no decryption per user and a call after
the first pays two dict lookups. Every spec's pool key is the template id and a keyed hash of
everything that reaches the upstream process or server: calls with the same credentials share
a connection (a stdio process), calls with different ones never do.

An OAuth upstream has no stored values to open: each choice names whose token a call carries
(``own``: the user's connection, ``org``: the org's, ``shared:NAME``: a named shared one), and
the spec asks the token manager for it on every request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from patchbay.errors import UpstreamError
from patchbay.oauth.bearer import OwnerBearer
from patchbay.oauth.owner import owner_for
from patchbay.policy.credentials import ORG, CredentialChoice, KeyCredentials, choose_credential
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.security.crypto import Keyring, fingerprint

if TYPE_CHECKING:
    from patchbay.oauth.manager import TokenManager


@dataclass(frozen=True, slots=True)
class Sealed:
    """One stored ciphertext of ``{"env": ..., "headers": ...}`` and the context it is bound to."""

    token: str
    context: str


@dataclass(frozen=True, slots=True)
class Resolved:
    """The connection a call uses and which credential it carries ("own", "org", "shared:NAME")."""

    spec: UpstreamSpec
    credential: str
    # OAuth upstreams: the token the call carries (its owner may still have to connect).
    bearer: OwnerBearer | None = None
    # Required values of the upstream this credential has none for (a call with it is refused).
    missing: tuple[str, ...] = ()


class CredentialSpecs:
    """Per upstream of a catalog: the spec of each credential choice, decrypted on first use."""

    __slots__ = (
        "_base",
        "_fp_key",
        "_keyring",
        "_named",
        "_org",
        "_org_id",
        "_own",
        "_required",
        "_shared",
        "_template_id",
        "_tokens",
        "_users",
    )

    def __init__(
        self,
        *,
        base: UpstreamSpec,
        template_id: str,
        org_id: str,
        users: Mapping[str, Sealed],
        shared: Mapping[str, Sealed],
        keyring: Keyring,
        fp_key: bytes,
        tokens: TokenManager | None = None,
        required: tuple[str, ...] = (),
    ) -> None:
        self._template_id = template_id
        self._org_id = org_id
        self._users = users
        self._shared = shared
        self._keyring = keyring
        self._fp_key = fp_key
        self._base = base
        self._tokens = tokens
        self._required = required
        self._org = self._oauth(ORG, None) if tokens is not None else self._static(base, "org")
        # Opened on first use: per user id (own values), per shared credential name.
        self._own: dict[str, Resolved] = {}
        self._named: dict[str, Resolved] = {}

    @property
    def org(self) -> Resolved:
        """The org's configuration (global values under the org's own)."""
        return self._org

    def resolve(self, key: KeyCredentials, user_id: str) -> Resolved:
        """The connection for a call by ``key`` on behalf of ``user_id``.

        UpstreamError when that credential lacks a required value: the server runs because some
        other credential has them all, but never with a half-configured upstream.
        """
        found = self._pick(choose_credential(key, self._template_id), user_id)
        if found.missing:
            raise UpstreamError(
                f"upstream {self._base.name!r} needs {', '.join(found.missing)}, which the credential "
                f"{found.credential!r} of this key has no value for: set it, or bind the key to another credential"
            )
        return found

    def _pick(self, choice: CredentialChoice, user_id: str) -> Resolved:
        source = choice.source
        if source == "own":
            found = self._own.get(user_id)
            if found is None:
                found = self._own[user_id] = self._open(choice, user_id)
            return found
        if source == "org":
            return self._org
        found = self._named.get(choice.shared_name or "")
        if found is None:
            found = self._named[choice.shared_name or ""] = self._open(choice, user_id)
        return found

    def known(self) -> list[Resolved]:
        """Every connection resolved so far (the org's first)."""
        return [self._org, *self._own.values(), *self._named.values()]

    @property
    def oauth(self) -> bool:
        """Whether calls carry OAuth tokens (so a caller may have to connect first)."""
        return self._tokens is not None

    def _open(self, choice: CredentialChoice, user_id: str) -> Resolved:
        if self._tokens is not None:
            return self._oauth(choice, user_id)
        if choice.source == "shared":
            sealed = self._shared.get(choice.shared_name or "")
            if sealed is None:
                # Fail closed: never fall back to other credentials than the key's.
                raise UpstreamError(
                    f"shared credential {choice.shared_name!r} of upstream {self._base.name!r} does not exist"
                )
            return self._static(self._on_top(sealed), choice.label)
        sealed = self._users.get(user_id)
        return self._static(self._on_top(sealed), "own") if sealed is not None else self._org

    def _oauth(self, choice: CredentialChoice, user_id: str | None) -> Resolved:
        assert self._tokens is not None  # only OAuth upstreams get here
        owner = owner_for(self._template_id, self._org_id, user_id, choice)
        bearer = OwnerBearer(self._tokens, owner)
        base = self._keyed(self._base)
        # One pooled connection per token owner; the token itself is fetched per request.
        spec = replace(base, key=f"{base.key}:oauth:{owner.key}", auth=bearer)
        return Resolved(spec, choice.label, bearer)

    def _static(self, spec: UpstreamSpec, label: str) -> Resolved:
        have = {*spec.env, *spec.headers}
        return Resolved(self._keyed(spec), label, missing=tuple(k for k in self._required if k not in have))

    def _on_top(self, sealed: Sealed) -> UpstreamSpec:
        value = self._keyring.decrypt_json(sealed.token, context=sealed.context)
        return replace(
            self._base,
            env={**self._base.env, **(value.get("env") or {})},
            headers={**self._base.headers, **(value.get("headers") or {})},
        )

    def _keyed(self, spec: UpstreamSpec) -> UpstreamSpec:
        return replace(
            spec, key=pool_key(spec, template_id=self._template_id, org_id=self._org_id, fp_key=self._fp_key)
        )


def pool_key(spec: UpstreamSpec, *, template_id: str, org_id: str | None, fp_key: bytes) -> str:
    """``template id:fingerprint`` of everything that reaches the upstream process or server.

    The org is hashed in too: tenants never share a process, even with equal values.
    """
    digest = fingerprint(
        fp_key,
        [org_id, spec.transport, list(spec.command), spec.cwd, spec.url, spec.era, dict(spec.env), dict(spec.headers)],
    )
    return f"{template_id}:{digest}"
