"""HTTP edge only: the MCP endpoint, health, and (later) REST routes and the console."""
