"""Which tools a key may see and call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from patchbay.auth.principal import Principal


class ToolFacts(Protocol):
    """What a decision needs to know about a tool (a catalog ``ToolRoute`` has it)."""

    @property
    def tool_id(self) -> str: ...

    @property
    def exposed_name(self) -> str: ...

    @property
    def read_only(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


def decide(principal: Principal, route: ToolFacts) -> Decision:
    """A key with no allow-list may use every tool; ``r`` covers read-only tools, ``rw`` all."""
    if principal.all_tools:
        return ALLOW
    grant = principal.grants.get(route.tool_id)
    if grant is None:
        return Decision(False, f"API key {principal.key_prefix} may not use tool '{route.exposed_name}'")
    if grant.can_write or (grant.can_read and route.read_only):
        return ALLOW
    return Decision(
        False,
        f"API key {principal.key_prefix} may only use read-only tools, and '{route.exposed_name}' is not",
    )


def visible(principal: Principal, route: ToolFacts) -> bool:
    return decide(principal, route).allowed
