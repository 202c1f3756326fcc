"""OAuth 2.1 connections from the gateway to upstream MCP servers.

discovery (401 → RFC 9728 → RFC 8414 / OpenID) → registration (pre-registered, Client ID
Metadata Document, or RFC 7591) → flow (authorization code + PKCE S256 + RFC 8707
``resource``, state in the shared store) → tokens (encrypted per owner, refreshed one at
a time) → bearer (what a pooled upstream connection asks for on every request).
"""
