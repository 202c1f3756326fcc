"""Tool → upstream session (stdio / Streamable HTTP / SSE pool) or local engine."""
