"""Whose OAuth tokens a call carries; imported by routing without pulling in the token store."""

from __future__ import annotations

from dataclasses import dataclass

from patchbay.policy.credentials import CredentialChoice


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose tokens: a user's own (``user_id``), a named shared credential, or the org's (neither)."""

    template_id: str
    org_id: str
    user_id: str | None = None
    shared_name: str | None = None

    @property
    def key(self) -> str:
        return f"{self.template_id}:{self.org_id}:{self.user_id or '-'}:{self.shared_name or '-'}"

    @property
    def purpose(self) -> str:
        return "user" if self.user_id is not None else "shared"


def owner_for(template_id: str, org_id: str, user_id: str | None, credential: CredentialChoice) -> Owner:
    """Whose tokens ``credential`` means for ``user_id``: theirs (``own``), the org's, or a shared one."""
    return Owner(
        template_id=template_id,
        org_id=org_id,
        user_id=user_id if credential.source == "own" else None,
        shared_name=credential.shared_name if credential.source == "shared" else None,
    )
