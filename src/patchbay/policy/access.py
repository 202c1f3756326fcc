"""Who may do what in an organization: the one place management authorization is decided.

Every REST route names the action it performs; ``authorize`` checks the caller's role
in the org against the table below and fails closed: an action missing from the table,
an unknown role or no membership at all is a refusal. Being outside an org is answered
as "not found" by the caller resolution (``web.api.deps``), so nobody learns that
another org's things exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from patchbay.errors import Forbidden

Role = Literal["owner", "admin", "member"]
ROLES: tuple[Role, ...] = ("owner", "admin", "member")
_RANK: dict[str, int] = {"member": 1, "admin": 2, "owner": 3}


class Action(StrEnum):
    ORG_READ = "org.read"
    MEMBERS_READ = "members.read"
    MEMBERS_MANAGE = "members.manage"
    TEMPLATES_READ = "templates.read"
    TEMPLATES_MANAGE = "templates.manage"
    SERVERS_READ = "servers.read"
    SERVERS_MANAGE = "servers.manage"
    TOOLS_READ = "tools.read"
    TOOLS_MANAGE = "tools.manage"
    TOOLS_EXECUTE = "tools.execute"  # call a tool directly (REST execute) as oneself
    DOCUMENTS_READ = "documents.read"
    DOCUMENTS_MANAGE = "documents.manage"
    CONFIG_SET_ORG = "config.set_org"
    CONFIG_SET_OWN = "config.set_own"
    KEYS_OWN = "keys.own"  # read, create and revoke one's own keys
    KEYS_ANY = "keys.any"  # read and revoke everyone's keys, create keys for other members
    CREDENTIALS_READ = "credentials.read"  # names of the org's shared credentials (never values)
    # set and remove shared credentials, bind them to keys, create shared keys
    CREDENTIALS_MANAGE = "credentials.manage"
    CONNECTIONS_OWN = "connections.own"  # start, list and remove one's own OAuth connections
    LOGS_OWN = "logs.own"  # read the audit records of one's own calls and keys
    LOGS_ANY = "logs.any"  # read every audit record of the org


# The least role that may perform each action.
_MIN_ROLE: dict[Action, Role] = {
    Action.ORG_READ: "member",
    Action.MEMBERS_READ: "member",
    Action.MEMBERS_MANAGE: "owner",
    Action.TEMPLATES_READ: "member",
    Action.TEMPLATES_MANAGE: "admin",
    Action.SERVERS_READ: "member",
    Action.SERVERS_MANAGE: "admin",
    Action.TOOLS_READ: "member",
    Action.TOOLS_MANAGE: "admin",
    Action.TOOLS_EXECUTE: "member",
    Action.DOCUMENTS_READ: "member",
    Action.DOCUMENTS_MANAGE: "admin",
    Action.CONFIG_SET_ORG: "admin",
    Action.CONFIG_SET_OWN: "member",
    Action.KEYS_OWN: "member",
    Action.KEYS_ANY: "admin",
    Action.CREDENTIALS_READ: "member",
    Action.CREDENTIALS_MANAGE: "admin",
    Action.CONNECTIONS_OWN: "member",
    Action.LOGS_OWN: "member",
    Action.LOGS_ANY: "admin",
}


@dataclass(frozen=True, slots=True)
class OrgAccess:
    """A signed-in user acting in one org they belong to, with their role there."""

    user_id: str
    org_id: str
    org_slug: str
    role: str
    platform_admin: bool = False

    def may(self, action: Action) -> bool:
        """Whether this role allows ``action`` (no exception; for choosing what to show)."""
        return allowed(self.role, action)


def allowed(role: str | None, action: Action) -> bool:
    """The decision table; anything unknown is a no."""
    need = _MIN_ROLE.get(action)
    have = _RANK.get(role or "")
    return need is not None and have is not None and have >= _RANK[need]


def authorize(access: OrgAccess, action: Action) -> None:
    """Forbidden unless ``access`` allows ``action``."""
    if not allowed(access.role, action):
        raise Forbidden(f"your role in this organization ({access.role}) does not allow {action.value}")


def authorize_own(access: OrgAccess, *, owner_id: str, own: Action, any_: Action) -> None:
    """Forbidden unless the caller owns the thing (and may ``own``) or may ``any_``."""
    if owner_id == access.user_id and allowed(access.role, own):
        return
    authorize(access, any_)


def authorize_platform(*, platform_admin: bool, what: str) -> None:
    """Forbidden unless the caller is a platform administrator."""
    if not platform_admin:
        raise Forbidden(f"only a platform administrator may {what}")


def can_assign(access: OrgAccess, role: str) -> bool:
    """Whether the caller may give ``role`` to someone (owners manage members, any role)."""
    return role in _RANK and allowed(access.role, Action.MEMBERS_MANAGE)


def key_owner_scope(access: OrgAccess) -> str | None:
    """Whose keys the caller may list: everyone's (None) for admins, else only their own."""
    return None if allowed(access.role, Action.KEYS_ANY) else access.user_id


def log_user_scope(access: OrgAccess) -> str | None:
    """Whose audit records the caller may read: the whole org's (None) for admins, else their own."""
    return None if allowed(access.role, Action.LOGS_ANY) else access.user_id
