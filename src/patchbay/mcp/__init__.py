"""The MCP protocol as Patchbay speaks it downstream: both eras on one endpoint."""
