"""Redaction of payloads before they are stored: secrets, keys and tokens never reach object storage.

Two rules, applied to the whole JSON document: a value under a key that names a secret
(``password``, ``api_key``, ``authorization``, ``*_token``...) is replaced whole, and any
string shaped like a well-known credential (Patchbay keys, bearer tokens, JWTs, AWS access
keys, GitHub / Slack / OpenAI-style tokens, PEM private keys) is cut out wherever it appears.
"""

from __future__ import annotations

import re
from typing import Any

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

_CREDENTIALS = re.compile(
    r"\b(?:pb|tk)_[A-Za-z0-9_-]{16,}"  # Patchbay API and tool keys
    r"|(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"  # Authorization header values
    r"|\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"  # JWTs
    r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"  # AWS access key ids
    r"|\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,}"  # Slack tokens
    r"|\bsk-[A-Za-z0-9_-]{20,}"  # OpenAI-style secret keys
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)"
)


def is_secret_name(name: str) -> bool:
    """True when a field called ``name`` holds a secret by its name alone."""
    folded = name.lower().replace("-", "").replace("_", "")
    if folded in _HARMLESS_NAMES:
        return False
    return any(folded == s or folded.endswith(s) for s in _SECRET_NAMES)


def redact_text(text: str) -> str:
    """``text`` with every credential-shaped substring replaced."""
    return _CREDENTIALS.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """A copy of the JSON value ``value`` with secrets removed (see the module doc)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            redact_text(str(k)): (REDACTED if is_secret_name(str(k)) and v not in (None, "") else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value
