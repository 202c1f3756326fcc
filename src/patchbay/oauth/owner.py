"""Whose OAuth tokens a call carries; imported by routing without pulling in the token store."""

from __future__ import annotations

from dataclasses import dataclass


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
