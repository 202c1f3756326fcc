"""JSON Merge Patch (RFC 7386) and JSON Patch (RFC 6902) over plain JSON values.

Both work on a private copy and return the new value, so a patch that fails half-way
leaves nothing changed.
"""

from __future__ import annotations

import copy
from typing import Any

from patchbay.engine.pointer import array_index, parse, render, resolve
from patchbay.errors import Conflict, InvalidInput, NotFound

OPS = ("add", "remove", "replace", "move", "copy", "test")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: list[Any]) -> Any:
    """RFC 6902: apply every operation in order, or none (raises on the first that fails)."""
    doc = copy.deepcopy(document)
    for number, op in enumerate(operations, start=1):
        if not isinstance(op, dict):
            raise InvalidInput(f"patch operation {number} is not an object")
        kind = op.get("op")
        if kind not in OPS:
            raise InvalidInput(f"patch operation {number}: op must be one of {', '.join(OPS)}, not {kind!r}")
        try:
            doc = _apply(doc, op, str(kind))
        except (InvalidInput, NotFound, Conflict) as exc:
            raise type(exc)(f"patch operation {number} ({kind}): {exc}") from None
    return doc


def _field(op: dict[str, Any], name: str) -> Any:
    if name not in op:
        raise InvalidInput(f"needs {name!r}")
    return op[name]


def _apply(doc: Any, op: dict[str, Any], kind: str) -> Any:
    path = parse(_field(op, "path"))
    if kind == "add":
        return _add(doc, path, copy.deepcopy(_field(op, "value")))
    if kind == "remove":
        doc, _ = _remove(doc, path)
        return doc
    if kind == "replace":
        value = copy.deepcopy(_field(op, "value"))
        resolve(doc, path)
        doc, _ = _remove(doc, path)
        return _add(doc, path, value)
    if kind == "test":
        if resolve(doc, path) != _field(op, "value"):
            raise Conflict(f"the value at {render(path) or 'the root'} is not the expected one")
        return doc
    source = parse(_field(op, "from"))
    if kind == "move":
        if path[: len(source)] == source and path != source:
            raise InvalidInput("cannot move a value into one of its own children")
        doc, moved = _remove(doc, source)
        return _add(doc, path, moved)
    return _add(doc, path, copy.deepcopy(resolve(doc, source)))  # copy


def _add(doc: Any, path: tuple[str, ...], value: Any) -> Any:
    if not path:
        return value
    parent = resolve(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(array_index(last, len(parent), pointer=render(path), allow_end=True), value)
    else:
        raise NotFound(f"{render(path[:-1]) or 'the root'} is not an object or array")
    return doc


def _remove(doc: Any, path: tuple[str, ...]) -> tuple[Any, Any]:
    if not path:
        raise InvalidInput("cannot remove the whole value")
    parent = resolve(doc, path[:-1])
    last = path[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise NotFound(f"{render(path)} does not exist")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(array_index(last, len(parent), pointer=render(path)))
    raise NotFound(f"{render(path)} does not exist")
