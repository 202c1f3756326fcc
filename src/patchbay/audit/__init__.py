"""Audit: every call leaves an ``AuditEvent``, written in batches by the ``AuditWriter``."""

from __future__ import annotations

from patchbay.audit.events import AuditEvent
from patchbay.audit.writer import AuditWriter

__all__ = ["AuditEvent", "AuditWriter"]
