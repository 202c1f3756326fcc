"""The request id: made once per request, carried to log lines and the audit record."""

from __future__ import annotations

import re
from contextvars import ContextVar

from patchbay.store.models import random_hex

REQUEST_ID: ContextVar[str | None] = ContextVar("patchbay_request_id", default=None)

# A caller-supplied X-Request-Id is kept only when it is short and plain: it ends up in logs.
_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{8,64}")


def new_request_id(incoming: str | None = None) -> str:
    """Adopt a well-formed ``X-Request-Id`` from the caller, or make a fresh one; bind it to this task."""
    rid = incoming if incoming is not None and _ACCEPTABLE.fullmatch(incoming) else random_hex(8)
    REQUEST_ID.set(rid)
    return rid


def current_request_id() -> str | None:
    """The id of the request this task serves, if any."""
    return REQUEST_ID.get()
