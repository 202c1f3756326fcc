"""The five local operations as pure functions: (document, pointer, arguments) → (new document, result).

Nothing here touches storage; ``runner`` loads the document, calls one of these on a
private copy and stores the new value only if the operation returned without raising.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jmespath
from jmespath.exceptions import ArityError, IncompleteExpressionError, JMESPathError, ParseError

from patchbay.engine.patch import json_patch, merge_patch
from patchbay.engine.pointer import array_index, render, replace_at, resolve
from patchbay.errors import Conflict, InvalidInput, NotFound

Outcome = tuple[Any, dict[str, Any]]  # (new document, or the same object when nothing changed; result)
Operation = Callable[[Any, tuple[str, ...], dict[str, Any]], Outcome]


def query(document: Any, path: tuple[str, ...], args: dict[str, Any]) -> Outcome:
    """JMESPath over the value at the path."""
    target = resolve(document, path)
    expression = args["expression"]
    try:
        found = jmespath.compile(expression).search(target)
    except JMESPathError as exc:
        raise InvalidInput(f"JMESPath expression {expression!r} fails: {_reason(exc)}") from None
    return document, {"result": found}


def _reason(exc: JMESPathError) -> str:
    """The first line of a JMESPath error, with the column when the parser knows it."""
    if isinstance(exc, IncompleteExpressionError):
        return "the expression is incomplete"
    position = getattr(exc, "lex_position", None)
    if isinstance(exc, ParseError) and position is not None and not isinstance(exc, ArityError):
        return f"{exc.msg} at column {position}"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def get(document: Any, path: tuple[str, ...], args: dict[str, Any]) -> Outcome:
    """The value at the path."""
    return document, {"value": resolve(document, path)}


def create(document: Any, path: tuple[str, ...], args: dict[str, Any]) -> Outcome:
    """Append to the array at the path, or add a new key to the object there."""
    target = resolve(document, path)
    where = render(path) or "the root"
    key = args.get("key")
    if isinstance(target, list):
        if key is not None:
            raise InvalidInput(f"the value at {where} is an array: items are appended, leave out 'key'")
        target.append(args["value"])
        return document, {"index": len(target) - 1, "value": args["value"]}
    if isinstance(target, dict):
        if key is None:
            raise InvalidInput(f"the value at {where} is an object: give the new item's 'key'")
        if key in target:
            raise Conflict(f"{render((*path, key))} already exists; use an update tool to change it")
        target[key] = args["value"]
        return document, {"key": key, "value": args["value"]}
    raise InvalidInput(f"the value at {where} is neither an array nor an object; nothing can be added to it")


def update(document: Any, path: tuple[str, ...], args: dict[str, Any]) -> Outcome:
    """A merge patch or a JSON Patch applied to the value at the path."""
    target = resolve(document, path)
    changed = merge_patch(target, args["merge"]) if "merge" in args else json_patch(target, args["patch"])
    return replace_at(document, path, changed), {"value": changed}


def delete(document: Any, path: tuple[str, ...], args: dict[str, Any]) -> Outcome:
    """Remove one key (object) or index (array) from the value at the path."""
    target = resolve(document, path)
    key = args["key"]
    where = render(path) or "the root"
    if isinstance(target, dict):
        name = str(key)
        if name not in target:
            raise NotFound(f"{render((*path, name))} does not exist")
        return document, {"key": name, "value": target.pop(name)}
    if isinstance(target, list):
        token = str(key)
        index = array_index(token, len(target), pointer=render((*path, token)))
        return document, {"key": index, "value": target.pop(index)}
    raise InvalidInput(f"the value at {where} is neither an array nor an object; nothing can be removed from it")


OPERATIONS: dict[str, Operation] = {
    "query": query,
    "get": get,
    "create": create,
    "update": update,
    "delete": delete,
}
