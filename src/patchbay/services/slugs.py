"""Slugs: short, lower-case identifiers of upstreams, servers and orgs.

An upstream's slug prefixes its tools (``slug__tool``), so a slug never contains
``__`` and never starts or ends with a separator: splitting an exposed name at
the first ``__`` always recovers the slug. ``slugify`` is idempotent.
"""

from __future__ import annotations

import re
import unicodedata

from patchbay.errors import InvalidInput

MAX_SLUG = 32
_SEPARATORS = re.compile(r"[^a-z0-9]+")
SLUG_RE = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$")


def _separator(run: re.Match[str]) -> str:
    # A lone underscore survives (snake_case names stay readable); any other run becomes "-".
    return "_" if run.group(0) == "_" else "-"


def slugify(name: str, *, max_length: int = MAX_SLUG) -> str:
    """A slug from a display name; empty when the name has no letters or digits."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _SEPARATORS.sub(_separator, ascii_name.lower()).strip("-_")
    return slug[:max_length].rstrip("-_")


def require_slug(name: str, *, what: str, max_length: int = MAX_SLUG) -> str:
    """The slug of ``name``, or InvalidInput when nothing usable is left."""
    slug = slugify(name, max_length=max_length)
    if not slug:
        raise InvalidInput(f"{what} name {name!r} needs at least one letter or digit")
    return slug


def is_slug(value: str, *, max_length: int = MAX_SLUG) -> bool:
    """Whether ``value`` already is a slug."""
    return len(value) <= max_length and SLUG_RE.fullmatch(value) is not None
