"""Catalog metadata of a template: description, tags, icon, visibility."""

from __future__ import annotations

from collections.abc import Sequence

from patchbay.errors import InvalidInput
from patchbay.services.slugs import is_slug
from patchbay.store.models import ServerTemplate

VISIBILITIES = ("public", "org", "private")
MAX_TAGS = 20
MAX_TAG = 40
MAX_DESCRIPTION = 4000
MAX_ICON = 500


def check_tags(tags: Sequence[str]) -> list[str]:
    """Lower-case slug tags, each once, in the given order."""
    out: list[str] = []
    for tag in tags:
        clean = tag.strip().lower()
        if not is_slug(clean, max_length=MAX_TAG):
            raise InvalidInput(f"tag {tag[:MAX_TAG]!r} must be lower-case letters, digits, '-' or '_'")
        if clean not in out:
            out.append(clean)
    if len(out) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags")
    return out


def check_icon(icon: str) -> str:
    """An https URL (or a small data: image) for the console to show."""
    clean = icon.strip()
    if len(clean) > MAX_ICON or not (clean.startswith("https://") or clean.startswith("data:image/")):
        raise InvalidInput(f"icon must be an https:// URL or a data:image/ URI of at most {MAX_ICON} characters")
    return clean


def update_template(
    template: ServerTemplate,
    *,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    icon: str | None = None,
    visibility: str | None = None,
) -> ServerTemplate:
    """Change the catalog fields given (None: keep); the empty string clears an icon."""
    if description is not None:
        if len(description) > MAX_DESCRIPTION:
            raise InvalidInput(f"description is longer than {MAX_DESCRIPTION} characters")
        template.description = description.strip()
    if tags is not None:
        template.tags = check_tags(tags)
    if icon is not None:
        template.icon = check_icon(icon) if icon.strip() else None
    if visibility is not None:
        if visibility not in VISIBILITIES:
            raise InvalidInput(f"visibility must be one of {', '.join(VISIBILITIES)}")
        template.visibility = visibility
    return template
