"""The gateway's own OAuth URLs, all under its public URL (``PATCHBAY_PUBLIC_URL``)."""

from __future__ import annotations

from urllib.parse import quote

from patchbay.settings import Settings

CALLBACK_PATH = "/api/v1/oauth/callback"
METADATA_DOCUMENT_PATH = "/api/v1/oauth/client-metadata.json"
CLIENT_NAME = "Patchbay MCP gateway"


def public_base(settings: Settings) -> str:
    """The canonical external URL, or the local listen address when none is configured."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"http://{settings.host}:{settings.port}"


def redirect_uri(settings: Settings) -> str:
    return public_base(settings) + CALLBACK_PATH


def metadata_document_url(settings: Settings) -> str:
    """The Client ID Metadata Document's URL, which is also the client_id it declares."""
    return public_base(settings) + METADATA_DOCUMENT_PATH


def connect_url(settings: Settings, *, org_slug: str, upstream_slug: str) -> str:
    """Where a user starts (or restarts) their connection to an upstream."""
    return f"{public_base(settings)}/api/v1/orgs/{quote(org_slug)}/connections/{quote(upstream_slug)}/start"


def metadata_document(settings: Settings) -> dict[str, object]:
    """The Client ID Metadata Document: a public client using PKCE, redirected to our callback."""
    return {
        "client_id": metadata_document_url(settings),
        "client_name": CLIENT_NAME,
        "client_uri": public_base(settings),
        "redirect_uris": [redirect_uri(settings)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
