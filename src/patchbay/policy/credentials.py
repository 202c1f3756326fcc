"""Which upstream credential a call uses: chosen per (API key, template), in one function.

A key binds, per upstream of its server, ``own`` (its owner's values over the org's; later
also the owner's OAuth token), ``org`` (the org's shared configuration) or ``shared:NAME``
(a named shared credential of the org). Without a binding a personal key calls with ``own``
(user values over org values, the behaviour before keys could choose) and a shared key with
``org``: a key anyone may hold never calls with its creator's personal secrets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from patchbay.errors import InvalidInput

CredentialSource = Literal["own", "org", "shared"]
SHARED_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class CredentialChoice:
    """``own`` / ``org``, or ``shared`` with the credential's name."""

    source: CredentialSource
    shared_name: str | None = None

    @property
    def label(self) -> str:
        """How lists and audit records write it: ``own``, ``org`` or ``shared:NAME``."""
        return f"shared:{self.shared_name}" if self.source == "shared" else self.source

    @classmethod
    def parse(cls, text: str) -> CredentialChoice:
        """``own``, ``org`` or ``shared:NAME``; InvalidInput otherwise."""
        value = text.strip()
        if value in ("own", "org"):
            return OWN if value == "own" else ORG
        kind, sep, name = value.partition(":")
        if kind == "shared" and sep and SHARED_NAME.match(name):
            return cls("shared", name)
        raise InvalidInput(f"credential {text!r}: write own, org or shared:NAME (NAME: lowercase letters, digits, - _)")


OWN = CredentialChoice("own")
ORG = CredentialChoice("org")


def choice_of(source: str, shared_name: str | None) -> CredentialChoice:
    """A stored binding (``ApiKeyCredential.source`` and the shared credential's name) as a choice."""
    if source == "shared" and shared_name is not None:
        return CredentialChoice("shared", shared_name)
    return ORG if source == "org" else OWN


class KeyCredentials(Protocol):
    """What the choice needs from a key (``patchbay.auth.principal.Principal`` fits)."""

    @property
    def shared(self) -> bool: ...
    @property
    def credentials(self) -> Mapping[str, CredentialChoice]: ...


def choose_credential(key: KeyCredentials, template_id: str) -> CredentialChoice:
    """The credential ``key`` calls the upstream ``template_id`` with."""
    bound = key.credentials.get(template_id)
    if bound is not None:
        return bound
    return ORG if key.shared else OWN


@dataclass(frozen=True, slots=True)
class _Unbound:
    shared: bool = False
    credentials: Mapping[str, CredentialChoice] = field(default_factory=dict)


# A person calling without a key (a member's session, the CLI operator): their own values over the org's.
PERSONAL: KeyCredentials = _Unbound()
