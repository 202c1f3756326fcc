"""The names MCP clients see for a server's tools.

Default ``{upstream slug}__{tool}``; a plain-names server shows the upstream's own
names; an override name set on the server wins over both. Every name satisfies the
MCP tool-name rules (1-128 characters of ``[A-Za-z0-9_.-]``); anything else is
sanitised deterministically. Within one server names never collide: when two tools
want the same name, an explicit override beats a generated name and then the oldest
attachment (ids sort by age) keeps it, the others get a short suffix derived from
their own id, so adding a tool never renames one that clients already know.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from patchbay.store.models import Server, ServerTool

SEPARATOR = "__"
MAX_TOOL_NAME = 128
_VALID = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_INVALID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_HASH_CHARS = 6


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def is_valid_tool_name(name: str) -> bool:
    """Whether ``name`` meets the MCP tool-name rules."""
    return _VALID.fullmatch(name) is not None


def sanitize_tool_name(name: str) -> str:
    """``name`` if valid, else a valid name that depends only on ``name`` (tagged with its hash)."""
    if is_valid_tool_name(name):
        return name
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    cleaned = _INVALID_CHARS.sub("_", ascii_name)
    if not any(ch.isalnum() for ch in cleaned):
        cleaned = "tool"
    suffix = "_" + _digest(name)[:_HASH_CHARS]
    return cleaned[: MAX_TOOL_NAME - len(suffix)] + suffix


def prefixed_name(slug: str, name: str) -> str:
    """``slug__name`` (not sanitised: prompts and resources reuse it with their own rules)."""
    return f"{slug}{SEPARATOR}{name}"


def default_tool_name(*, slug: str | None, tool_name: str, plain: bool) -> str:
    """The exposed name of a tool before overrides and collision handling."""
    raw = tool_name if plain or not slug else prefixed_name(slug, tool_name)
    return sanitize_tool_name(raw)


@dataclass(frozen=True, slots=True)
class NameRequest:
    """One tool asking for a name: ``key`` is its stable identity on the server."""

    key: str
    candidate: str
    explicit: bool = False


def resolve_names(requests: Iterable[NameRequest]) -> dict[str, str]:
    """A unique, valid name per request key."""
    groups: dict[str, list[NameRequest]] = {}
    for req in requests:
        groups.setdefault(sanitize_tool_name(req.candidate), []).append(req)
    # Every wanted name is reserved up front, so a suffixed name never takes another tool's own name.
    taken = set(groups)
    names: dict[str, str] = {}
    losers: list[tuple[str, NameRequest]] = []
    for candidate, group in groups.items():
        group.sort(key=lambda r: (not r.explicit, r.key))
        names[group[0].key] = candidate
        losers.extend((candidate, r) for r in group[1:])
    for candidate, req in sorted(losers, key=lambda item: item[1].key):
        name = _suffixed(candidate, req.key, taken)
        taken.add(name)
        names[req.key] = name
    return names


def _suffixed(base: str, key: str, taken: set[str]) -> str:
    digest = _digest(key)
    for length in range(_HASH_CHARS, len(digest) + 1, 2):
        suffix = "_" + digest[:length]
        name = base[: MAX_TOOL_NAME - len(suffix)] + suffix
        if name not in taken:
            return name
    raise RuntimeError(f"cannot find a free name for {base!r}")  # pragma: no cover - needs a sha256 clash


def exposed_tool_names(server: Server, server_tools: Iterable[ServerTool]) -> dict[str, str]:
    """ServerTool id -> exposed name, for every tool of the server (enabled or not).

    Needs ``server.templates`` (with each link's template) and each ``ServerTool.tool`` loaded.
    """
    slugs = {link.template_id: link.template.slug for link in server.templates}
    requests: list[NameRequest] = []
    for st in server_tools:
        if st.override_name:
            requests.append(NameRequest(key=st.id, candidate=st.override_name, explicit=True))
            continue
        slug = slugs.get(st.tool.template_id) if st.tool.template_id else None
        candidate = default_tool_name(slug=slug, tool_name=st.tool.name, plain=server.plain_names)
        requests.append(NameRequest(key=st.id, candidate=candidate))
    return resolve_names(requests)
