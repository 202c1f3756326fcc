"""RFC 6901 JSON pointers: parsing, and finding the value or the slot a pointer names."""

from __future__ import annotations

from typing import Any

from patchbay.errors import InvalidInput, NotFound

MAX_POINTER = 1000


def parse(pointer: str) -> tuple[str, ...]:
    """The reference tokens of ``pointer`` ("" is the whole document); InvalidInput if malformed."""
    if not isinstance(pointer, str):
        raise InvalidInput("a JSON pointer must be a string")
    if len(pointer) > MAX_POINTER:
        raise InvalidInput(f"JSON pointer is longer than {MAX_POINTER} characters")
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise InvalidInput(f"JSON pointer {pointer!r} must be empty or start with '/'")
    tokens = []
    for raw in pointer[1:].split("/"):
        # "~" may only introduce "~0" (~) or "~1" (/).
        if "~" in raw.replace("~0", "").replace("~1", ""):
            raise InvalidInput(f"JSON pointer {pointer!r} has a '~' that is not ~0 or ~1")
        tokens.append(raw.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def escape(token: str) -> str:
    """One reference token as it is written inside a pointer."""
    return token.replace("~", "~0").replace("/", "~1")


def render(tokens: tuple[str, ...] | list[str]) -> str:
    """The pointer text for ``tokens``."""
    return "".join("/" + escape(t) for t in tokens)


def array_index(token: str, length: int, *, pointer: str, allow_end: bool = False) -> int:
    """The array index ``token`` names (``-`` is one past the end when ``allow_end``)."""
    if allow_end and token == "-":
        return length
    if not token.isdigit() or (token != "0" and token.startswith("0")) or not token.isascii():
        raise NotFound(f"{pointer}: {token!r} is not an array index")
    index = int(token)
    limit = length if allow_end else length - 1
    if index > limit:
        raise NotFound(f"{pointer}: index {index} is out of range (the array has {length} items)")
    return index


def resolve(document: Any, tokens: tuple[str, ...]) -> Any:
    """The value at ``tokens``; NotFound names the first step that does not exist."""
    current = document
    for depth, token in enumerate(tokens):
        where = render(tokens[: depth + 1])
        if isinstance(current, dict):
            if token not in current:
                raise NotFound(f"{where} does not exist")
            current = current[token]
        elif isinstance(current, list):
            current = current[array_index(token, len(current), pointer=where)]
        else:
            raise NotFound(f"{where} does not exist: {render(tokens[:depth]) or 'the root'} is not an object or array")
    return current


def replace_at(document: Any, tokens: tuple[str, ...], value: Any) -> Any:
    """``document`` with the value at ``tokens`` (which must exist) replaced; mutates containers in place."""
    if not tokens:
        return value
    parent = resolve(document, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent[array_index(last, len(parent), pointer=render(tokens))] = value
    else:  # pragma: no cover - resolve() of the full path has already succeeded
        raise NotFound(f"{render(tokens)} does not exist")
    return document
