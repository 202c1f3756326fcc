"""What each OAuth ciphertext is bound to: a copy moved onto another row does not decrypt."""

from __future__ import annotations


def client_context(template_id: str) -> str:
    """The client secret of one template's OAuth client."""
    return f"oauth_client:{template_id}"


def token_context(token_id: str, template_id: str, org_id: str, user_id: str | None, shared_name: str | None) -> str:
    """The tokens of one connection (row id and owner)."""
    return f"oauth_token:{token_id}:{template_id}:{org_id}:{user_id or '-'}:{shared_name or '-'}"
