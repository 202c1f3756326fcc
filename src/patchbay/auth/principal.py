"""Who is calling: the small frozen value every later stage receives."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from patchbay.policy.credentials import CredentialChoice


@dataclass(frozen=True, slots=True)
class ToolGrant:
    can_read: bool
    can_write: bool


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated API key: its org, server, owner and tool permissions."""

    key_id: str
    key_prefix: str
    key_revision: int
    org_id: str
    server_id: str
    server_revision: int
    user_id: str
    all_tools: bool
    grants: Mapping[str, ToolGrant]  # tool id -> grant; empty when all_tools
    auth_method: str = "api_key"
    rate_limit: int | None = None  # the key's calls per minute; None: unlimited
    shared: bool = False  # not personal: calls with shared credentials whoever holds it
    # template id -> the credential chosen for that upstream; absent: the default choice
    credentials: Mapping[str, CredentialChoice] = field(default_factory=dict)
