"""Redaction of payloads before they are stored: secrets, keys and tokens never reach object storage.

Two rules, applied to the whole JSON document: a value under a key that names a secret
(``password``, ``api_key``, ``authorization``, ``*_token``...) is replaced whole, and any
string shaped like a well-known credential (Patchbay keys, bearer tokens, JWTs, AWS access
keys, GitHub / Slack / OpenAI-style tokens, PEM private keys) is cut out wherever it appears.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import orjson

REDACTED = "[redacted]"

# Compared after lower-casing and dropping "-" and "_": "API-Key", "api_key" and "apiKey" are one name.
_SECRET_NAMES = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "credential",
    "credentials",
    "privatekey",
    "cookie",
    "setcookie",
    "accesskey",
    "sessionid",
    "signature",
    "xapikey",
)
# Names that end like a secret name but are not secrets.
_HARMLESS_NAMES = frozenset({"progresstoken", "maxtokens", "nextcursor", "cursor", "tokens", "tokencount"})

# Run over serialized JSON, so no pattern may match a quote or an escape's backslash (the PEM body
# stops at the end of its JSON string) and the text stays valid JSON. No pattern starts with \b: in
# JSON text a secret after a newline follows the "n" of "\n".
_CREDENTIALS = re.compile(
    r"(?:pb|tk)_[A-Za-z0-9_-]{16,}"  # Patchbay API and tool keys
    r"|(?i:bearer|basic) +[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|(?:AKIA|ASIA)[A-Z0-9]{16}"  # AWS access key ids
    r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|sk-[A-Za-z0-9_-]{20,}"  # OpenAI-style secret keys
    r'|-----BEGIN [A-Z ]*PRIVATE KEY-----(?:[^"\\]|\\.)*?(?:-----END [A-Z ]*PRIVATE KEY-----|(?="))'
)


# Every credential pattern above starts with one of these (compared lower-cased). Most strings
# contain none, and a few substring tests are far cheaper than running the pattern.
_TRIGGERS = ("pb_", "tk_", "bearer", "basic", "eyj", "akia", "asia", "gh", "xox", "sk-", "-----begin")


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """True when a field called ``name`` holds a secret by its name alone."""
    folded = name.lower().replace("-", "").replace("_", "")
    if folded in _HARMLESS_NAMES:
        return False
    return any(folded == s or folded.endswith(s) for s in _SECRET_NAMES)


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped substring replaced."""
    return orjson.loads(_scrub(orjson.dumps(text)))  # type: ignore[no-any-return]


def _scrub(serialized: bytes) -> bytes:
    text = serialized.decode()
    return _scrub_text(serialized, text, text.lower())


def _scrub_text(serialized: bytes, text: str, lowered: str) -> bytes:
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return serialized
    return _CREDENTIALS.sub(REDACTED, text).encode()


def redact_serialized(serialized: bytes) -> bytes | None:
    """JSON text with credentials cut out, without parsing it, when no field in it can be named
    like a secret; None when it needs the full pass (``redact_json`` of the parsed value).

    Safe because it is conservative: every secret name, folded as ``is_secret_name`` folds it,
    contains itself as a substring, so a text whose folded form contains none of them has no
    field that ``_by_name`` would replace. Escapes are the one way a key's text can differ from
    its name, and the credential patterns read the text as orjson writes it: ``\\u`` (any
    character) and ``\\/`` are the only escapes orjson does not write the same way, so a text
    with either takes the full pass.
    """
    text = serialized.decode()
    if "\\u" in text or "\\/" in text:
        return None
    lowered = text.lower()
    folded = lowered.replace("-", "").replace("_", "")
    if any(name in folded for name in _SECRET_NAMES):
        return None
    return _scrub_text(serialized, text, lowered)


def _by_name(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (REDACTED if is_secret_name(str(k)) and v not in (None, "") else _by_name(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_by_name(v) for v in value]
    return value


def redact_json(value: Any) -> bytes:
    """``value`` serialized as JSON with secrets removed (see the module doc)."""
    return _scrub(orjson.dumps(_by_name(value)))


def redact(value: Any) -> Any:
    """A copy of the JSON value ``value`` with secrets removed (see the module doc)."""
    return orjson.loads(redact_json(value))
