"""``Mcp-Param-*`` headers (2026-07-28): tool arguments mirrored into HTTP headers for intermediaries.

A tool's input schema marks a property with ``"x-mcp-header": "Token"``; a client
then sends ``Mcp-Param-Token: <value>`` with every ``tools/call``. The gateway checks
them on the way in and writes them afresh on the way out to an HTTP upstream.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from patchbay.jsonrpc_types import JSONObject

PREFIX = "mcp-param-"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SAFE = re.compile(r"^[\x20-\x7e]*$")
_PRIMITIVE = frozenset({"string", "integer", "boolean"})

# (property path, header token, JSON type)
Annotation = tuple[tuple[str, ...], str, str]


def header_marks(schema: Any) -> tuple[Annotation, ...]:
    """Every valid ``x-mcp-header`` reachable through plain ``properties`` chains; () if any is invalid."""
    found: list[Annotation] = []
    stack: list[tuple[tuple[str, ...], Any]] = [((), schema)]
    seen: set[str] = set()
    while stack:
        path, node = stack.pop()
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        if isinstance(props, dict):
            stack.extend(((*path, name), sub) for name, sub in props.items())
        token = node.get("x-mcp-header")
        if token is None or not path:
            continue
        kind = node.get("type")
        if not isinstance(token, str) or not _TOKEN.match(token) or kind not in _PRIMITIVE:
            return ()  # an invalid schema validates nothing (conforming clients drop the tool)
        if token.lower() in seen:
            return ()
        seen.add(token.lower())
        found.append((path, token, str(kind)))
    return tuple(sorted(found))


def _value(arguments: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = arguments
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def _render(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def encode(value: str) -> str:
    if _SAFE.match(value) and value == value.strip() and not value.startswith("=?base64?"):
        return value
    return "=?base64?" + base64.b64encode(value.encode()).decode() + "?="


def decode(value: str) -> str | None:
    if not (value.startswith("=?base64?") and value.endswith("?=")):
        return value
    try:
        return base64.b64decode(value[9:-2], validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def outgoing(marks: tuple[Annotation, ...], arguments: Any) -> dict[str, str]:
    """The headers a request with ``arguments`` carries for a tool with ``marks``."""
    if not marks or not isinstance(arguments, Mapping):
        return {}
    headers: dict[str, str] = {}
    for path, token, _kind in marks:
        rendered = _render(_value(arguments, path))
        if rendered is not None:
            headers[f"Mcp-Param-{token}"] = encode(rendered)
    return headers


def mismatch(marks: tuple[Annotation, ...], arguments: Any, headers: Mapping[str, str]) -> str | None:
    """Why the client's ``Mcp-Param-*`` headers disagree with its arguments, or None."""
    args: JSONObject = arguments if isinstance(arguments, dict) else {}
    for path, token, kind in marks:
        raw = headers.get(PREFIX + token.lower())
        name = f"Mcp-Param-{token}"
        rendered = _render(_value(args, path))
        where = ".".join(path)
        if rendered is None:
            if raw is not None:
                return f"{name} header is present but the argument {where!r} is absent"
            continue
        if raw is None:
            return f"{name} header is missing but the argument {where!r} is present"
        decoded = decode(raw.strip())
        if decoded is None or not _same(kind, rendered, decoded):
            return f"{name} header does not match the argument {where!r}"
    return None


def _same(kind: str, rendered: str, decoded: str) -> bool:
    if decoded == rendered:
        return True
    if kind == "integer":
        try:
            return float(decoded) == float(rendered) and float(decoded).is_integer()
        except ValueError:
            return False
    return False
