"""Discovery rules that need no server: challenge parsing and the order of well-known URLs."""

from __future__ import annotations

from patchbay.oauth.discovery import (
    Challenge,
    authorization_metadata_urls,
    canonical_resource,
    parse_challenge,
    resource_metadata_urls,
)


def test_a_bearer_challenge_yields_its_metadata_link_and_scope() -> None:
    header = 'Bearer error="invalid_token", resource_metadata="https://mcp.example.com/.well-known/x", scope="a b"'
    assert parse_challenge(header) == Challenge("https://mcp.example.com/.well-known/x", "a b")
    assert parse_challenge("Basic realm=x") is None


def test_resource_metadata_is_looked_for_at_the_link_then_path_aware_then_root() -> None:
    link = Challenge("https://rs.example.com/meta")
    assert resource_metadata_urls("https://rs.example.com/public/mcp", link) == [
        "https://rs.example.com/meta",
        "https://rs.example.com/.well-known/oauth-protected-resource/public/mcp",
        "https://rs.example.com/.well-known/oauth-protected-resource",
    ]


def test_issuers_with_a_path_try_oauth_then_both_openid_forms() -> None:
    assert authorization_metadata_urls("https://auth.example.com/tenant1") == [
        "https://auth.example.com/.well-known/oauth-authorization-server/tenant1",
        "https://auth.example.com/.well-known/openid-configuration/tenant1",
        "https://auth.example.com/tenant1/.well-known/openid-configuration",
    ]
    assert authorization_metadata_urls("https://auth.example.com") == [
        "https://auth.example.com/.well-known/oauth-authorization-server",
        "https://auth.example.com/.well-known/openid-configuration",
    ]


def test_the_resource_indicator_is_the_canonical_upstream_url() -> None:
    assert canonical_resource("HTTPS://MCP.Example.com/mcp#frag") == "https://mcp.example.com/mcp"
