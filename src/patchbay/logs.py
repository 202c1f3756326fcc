"""Logging setup: one format, and no secret ever reaches a log line."""

from __future__ import annotations

import logging
import re

# Anything shaped like a Patchbay key (pb_..., tk_...) or a bearer token is cut to its prefix.
_SECRET = re.compile(r"\b((?:pb|tk)_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def scrub(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", _SECRET.sub(r"\1…", text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with key material removed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every upstream request line at INFO; URLs may carry credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
