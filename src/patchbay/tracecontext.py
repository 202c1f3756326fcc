"""The W3C ``traceparent`` of the request being served, for upstream HTTP calls to carry on.

Set only while tracing is on (``PATCHBAY_OTLP_ENDPOINT``); otherwise it stays None and
upstream requests are sent exactly as before.
"""

from __future__ import annotations

from contextvars import ContextVar

TRACEPARENT: ContextVar[str | None] = ContextVar("patchbay_traceparent", default=None)
