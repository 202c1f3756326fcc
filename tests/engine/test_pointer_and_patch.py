"""RFC 6901 pointers, RFC 7386 merge patches and RFC 6902 JSON Patches, on plain values."""

from __future__ import annotations

from typing import Any

import pytest

from patchbay.engine.patch import json_patch, merge_patch
from patchbay.engine.pointer import parse, render, resolve
from patchbay.errors import Conflict, InvalidInput, NotFound

RFC6901 = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3, "g|h": 4, "i\\j": 5, 'k"l': 6, " ": 7, "m~n": 8}


@pytest.mark.parametrize(
    ("pointer", "expected"),
    [
        ("", RFC6901),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/c%d", 2),
        ("/e^f", 3),
        ("/g|h", 4),
        ("/i\\j", 5),
        ('/k"l', 6),
        ("/ ", 7),
        ("/m~0n", 8),
    ],
)
def test_pointers_resolve_as_in_rfc_6901(pointer: str, expected: Any) -> None:
    assert resolve(RFC6901, parse(pointer)) == expected


def test_rendering_a_pointer_escapes_tilde_and_slash() -> None:
    assert render(parse("/a~1b/m~0n")) == "/a~1b/m~0n"


@pytest.mark.parametrize("pointer", ["foo", "/bad~2escape", "/trailing~"])
def test_malformed_pointers_are_invalid_input(pointer: str) -> None:
    with pytest.raises(InvalidInput):
        parse(pointer)


@pytest.mark.parametrize(
    ("pointer", "message"),
    [
        ("/nope", "/nope does not exist"),
        ("/foo/2", "index 2 is out of range"),
        ("/foo/01", "'01' is not an array index"),
        ("/foo/-", "'-' is not an array index"),
        ("/foo/0/x", "/foo/0/x does not exist: /foo/0 is not an object or array"),
    ],
)
def test_missing_values_name_the_step_that_is_missing(pointer: str, message: str) -> None:
    with pytest.raises(NotFound, match=message.replace("/", "/")):
        resolve(RFC6901, parse(pointer))


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"title": "Goodbye!", "author": {"givenName": "John", "familyName": "Doe"}, "tags": ["example", "sample"]}
    patch = {"title": "Hello!", "phoneNumber": "+01-123-456-7890", "author": {"familyName": None}, "tags": ["example"]}
    assert merge_patch(target, patch) == {
        "title": "Hello!",
        "author": {"givenName": "John"},
        "tags": ["example"],
        "phoneNumber": "+01-123-456-7890",
    }
    assert target["author"] == {"givenName": "John", "familyName": "Doe"}  # the input is not touched
    assert merge_patch({"a": "b"}, ["c"]) == ["c"]
    assert merge_patch("text", {"a": {"b": None, "c": 1}}) == {"a": {"c": 1}}


def test_json_patch_applies_every_operation_in_order() -> None:
    doc = {"foo": ["bar", "baz"], "qux": {"n": 1}}
    out = json_patch(
        doc,
        [
            {"op": "add", "path": "/foo/1", "value": "new"},
            {"op": "add", "path": "/foo/-", "value": "end"},
            {"op": "remove", "path": "/foo/0"},
            {"op": "replace", "path": "/qux/n", "value": 2},
            {"op": "copy", "from": "/qux", "path": "/copied"},
            {"op": "move", "from": "/copied/n", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": 2},
        ],
    )
    assert out == {"foo": ["new", "baz", "end"], "qux": {"n": 2}, "copied": {}, "moved": 2}
    assert doc == {"foo": ["bar", "baz"], "qux": {"n": 1}}


def test_a_failing_operation_leaves_the_value_unchanged_and_is_named() -> None:
    doc = {"a": 1}
    with pytest.raises(NotFound, match=r"patch operation 2 \(remove\): /missing does not exist"):
        json_patch(doc, [{"op": "replace", "path": "/a", "value": 9}, {"op": "remove", "path": "/missing"}])
    assert doc == {"a": 1}
    with pytest.raises(Conflict, match="operation 1 \\(test\\)"):
        json_patch(doc, [{"op": "test", "path": "/a", "value": 2}])
    with pytest.raises(InvalidInput, match="op must be one of"):
        json_patch(doc, [{"op": "explode", "path": "/a"}])
    with pytest.raises(InvalidInput, match="into one of its own children"):
        json_patch({"a": {"b": 1}}, [{"op": "move", "from": "/a", "path": "/a/b/c"}])
