"""The payload document's fast path (bodies spliced in unparsed) redacts exactly what the full pass does."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from patchbay.audit.events import AuditEvent, fresh
from patchbay.audit.payloads import _SMALL_DOCUMENT, Captured, _gzip, decode_payload, encode_payload
from patchbay.audit.redact import REDACTED, redact, redact_serialized

SECRET = "pb_CANARYcanary0123456789abcdefghijklmnopqrstu"

# Names the fast path must notice (folded as is_secret_name folds them) and names it may pass.
_NAMES = st.sampled_from(
    [
        "text",
        "name",
        "password",
        "pass_word",
        "Pass-Word",
        "API-Key",
        "apiKey",
        "client_secret",
        "refreshToken",
        "progressToken",
        "maxTokens",
        "session_id",
        "set-cookie",
        "api\u212aey",  # KELVIN SIGN lower-cases to "k"
        "x",
    ]
)
_STRINGS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(
        [
            SECRET,
            f"Bearer {SECRET[3:]}",
            "AKIACANARY0123456789",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ.c2lnbmF0dXJl",
            'a/b\\c\n"d',
            "",
        ]
    ),
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES, inner, max_size=4),
    max_leaves=12,
)


@hsettings(max_examples=400, deadline=None)
@given(_JSON)
def test_the_unparsed_pass_agrees_with_the_full_one_or_declines(value: Any) -> None:
    fast = redact_serialized(orjson.dumps(value))
    if fast is not None:
        assert orjson.loads(fast) == redact(value)


def _escaped(text: str) -> bytes:
    """JSON text with every letter written as a \\u escape, as a client may send it."""
    return "".join(f"\\u{ord(c):04x}" if c.isalpha() else c for c in text).encode()


def test_escaped_names_and_credentials_take_the_full_pass() -> None:
    raw = (
        b'{"'
        + _escaped("password")
        + b'":"hunter2","t":"'
        + _escaped(SECRET)
        + b'","u":"a\\/'
        + SECRET.encode()
        + b'"}'
    )
    assert redact_serialized(raw) is None
    document = decode_payload(encode_payload(fresh(method="tools/call"), Captured(raw, b"", 0), cap=10_000))
    assert document["request"] == {"password": REDACTED, "t": REDACTED, "u": f"a/{REDACTED}"}


def _event() -> AuditEvent:
    return fresh(org_id="o" * 32, server_id="s" * 32, method="tools/call", tool_name="fx__echo")


def test_spliced_and_parsed_documents_read_the_same() -> None:
    request = (
        b'{"jsonrpc": "2.0", "id": 7,\n "method": "tools/call",'
        b' "params": {"name": "fx__echo", "arguments": {"text": "hi"}}}'
    )
    response = orjson.dumps({"jsonrpc": "2.0", "id": 7, "result": {"content": [{"type": "text", "text": "hi"}]}})
    event = _event()
    stored = encode_payload(event, Captured(request, response, len(response), "application/json"), cap=10_000)
    assert gzip.decompress(stored).startswith(b'{"record_id":')
    assert decode_payload(stored) == {
        "record_id": event.id,
        "created_at": event.created_at.isoformat(),
        "method": "tools/call",
        "tool": "fx__echo",
        "request": orjson.loads(request),
        "response": orjson.loads(response),
    }


def test_secret_fields_credentials_stubs_and_non_json_bodies() -> None:
    request = orjson.dumps({"params": {"arguments": {"apiKey": "k-123", "text": f"use {SECRET}"}}})
    cases: list[tuple[Captured, Any, Any]] = [
        (
            Captured(request, b"{}", 2, "application/json"),
            {"params": {"arguments": {"apiKey": REDACTED, "text": f"use {REDACTED}"}}},
            {},
        ),
        (Captured(b'{"a":1}', b"x" * 300, 300, "application/json"), {"a": 1}, {"truncated": True, "bytes": 300}),
        (Captured(b'{"a":1}', b"", 0, None), {"a": 1}, None),
        (
            Captured(b'{"a":1}', b"not json " + SECRET.encode(), 40, "text/plain"),
            {"a": 1},
            {"text": f"not json {REDACTED}"},
        ),
        (
            Captured(b'{"a":1}', b'event: message\ndata: {"token":"t-1"}\n\n', 40, "text/event-stream"),
            {"a": 1},
            {"events": [{"token": REDACTED}]},
        ),
    ]
    for captured, request_doc, response_doc in cases:
        document = decode_payload(encode_payload(_event(), captured, cap=200))
        assert (document["request"], document["response"]) == (request_doc, response_doc)


def test_a_document_under_a_block_is_stored_and_a_larger_one_compressed() -> None:
    # Under 4 KiB a document takes one file-system block either way, so it is not compressed
    # (decision 0019); above, it is. Both are gzip any reader takes.
    request = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fx__echo"}}'
    for text, compressed in (("hi", False), ("all work and no play " * 400, True)):
        response = orjson.dumps({"jsonrpc": "2.0", "id": 1, "result": {"content": [{"type": "text", "text": text}]}})
        stored = encode_payload(_event(), Captured(request, response, len(response), "application/json"), cap=1 << 20)
        document = gzip.decompress(stored)
        assert orjson.loads(document)["response"] == orjson.loads(response)
        if compressed:
            assert len(stored) < len(document) // 4
        else:
            assert len(document) <= len(stored) < len(document) + 64  # stored blocks add a few bytes
    largest_stored = _gzip(b"x" * (_SMALL_DOCUMENT - 1))
    assert _SMALL_DOCUMENT <= len(largest_stored) <= 4096  # still one block
