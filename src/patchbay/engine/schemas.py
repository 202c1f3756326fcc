"""What each kind of local tool accepts and promises: input schema, MCP annotations, description."""

from __future__ import annotations

import copy
from typing import Any, Final, Literal, get_args

from jsonschema import Draft202012Validator

Kind = Literal["query", "get", "create", "update", "delete"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
READ_KINDS: Final = frozenset({"query", "get"})

_VERSION: Final[dict[str, Any]] = {
    "type": "integer",
    "minimum": 1,
    "description": "Only write if the document is still at this version (from an earlier result).",
}
_PATCH_OP: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["op", "path"],
    "properties": {
        "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
        "path": {"type": "string"},
        "from": {"type": "string"},
        "value": {},
    },
}

_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "query": {
        "type": "object",
        "properties": {
            "expression": {
                "type": "string",
                "minLength": 1,
                "description": "A JMESPath expression evaluated against the value (e.g. items[?price > `10`].name).",
            }
        },
        "required": ["expression"],
        "additionalProperties": False,
    },
    "get": {"type": "object", "properties": {}, "additionalProperties": False},
    "create": {
        "type": "object",
        "properties": {
            "value": {"description": "The new item."},
            "key": {
                "type": "string",
                "minLength": 1,
                "description": "The new key, when the value at the path is an object (arrays append).",
            },
            "version": _VERSION,
        },
        "required": ["value"],
        "additionalProperties": False,
    },
    "update": {
        "type": "object",
        "properties": {
            "merge": {"description": "A JSON Merge Patch (RFC 7386) applied to the value."},
            "patch": {
                "type": "array",
                "items": _PATCH_OP,
                "minItems": 1,
                "description": "A JSON Patch (RFC 6902); its paths are relative to the value.",
            },
            "version": _VERSION,
        },
        "oneOf": [{"required": ["merge"]}, {"required": ["patch"]}],
        "additionalProperties": False,
    },
    "delete": {
        "type": "object",
        "properties": {
            "key": {
                "type": ["string", "integer"],
                "description": "The key (object) or index (array) of the item to remove.",
            },
            "version": _VERSION,
        },
        "required": ["key"],
        "additionalProperties": False,
    },
}

_VALIDATORS: Final = {kind: Draft202012Validator(schema) for kind, schema in _SCHEMAS.items()}

_SUMMARY: Final[dict[str, str]] = {
    "query": "Run a JMESPath query over the JSON value at {path} of document {doc}.",
    "get": "Read the JSON value at {path} of document {doc}.",
    "create": "Add an item to the array or object at {path} of document {doc}.",
    "update": "Change the JSON value at {path} of document {doc} with a merge patch or a JSON Patch.",
    "delete": "Remove one item (by key or index) from the value at {path} of document {doc}.",
}


def input_schema(kind: str) -> dict[str, Any]:
    """The JSON Schema of a tool's arguments (a fresh copy the caller may keep)."""

    return copy.deepcopy(_SCHEMAS[kind])


def validator(kind: str) -> Draft202012Validator:
    """The compiled validator for ``kind``'s arguments."""
    return _VALIDATORS[kind]


def tool_annotations(kind: str) -> dict[str, Any]:
    """MCP tool annotations: reads are read-only; update and delete can destroy data, create cannot."""
    read_only = kind in READ_KINDS
    notes: dict[str, Any] = {"readOnlyHint": read_only, "openWorldHint": False}
    if not read_only:
        notes["destructiveHint"] = kind in ("update", "delete")
        notes["idempotentHint"] = False
    else:
        notes["idempotentHint"] = True
    return notes


def default_description(kind: str, *, path: str, document: str) -> str:
    """A description for a tool created without one."""
    return _SUMMARY[kind].format(path=path or "the root", doc=document)
