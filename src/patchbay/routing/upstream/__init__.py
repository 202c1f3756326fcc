"""Connections to upstream MCP servers, one module per transport, pooled per process."""
