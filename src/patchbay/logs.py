"""Logging setup: text or JSON lines, the request id on each, and no secret ever in a log line."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

import orjson

from patchbay.audit.context import current_request_id

# Anything shaped like a Patchbay key (pb_..., tk_...) or a bearer token is cut to its prefix.
_SECRET = re.compile(r"\b((?:pb|tk)_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}")


def scrub(text: str) -> str:
    """``text`` with key material and bearer tokens cut to a harmless prefix."""
    return _BEARER.sub(r"\1[redacted]", _SECRET.sub(r"\1…", text))


class RedactingFilter(logging.Filter):
    """Rewrites each record's final message with key material removed, and tags it with the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        record.request_id = current_request_id()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, and the exception if any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(line).decode()


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{text} [request {request_id}]" if request_id else text


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every log line to stderr, as text or (``fmt="json"``) as JSON lines."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every upstream request line at INFO; URLs may carry credentials.
    logging.getLogger("httpx").setLevel(logging.WARNING)
