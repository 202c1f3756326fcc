"""(Principal, tool) → decision. Pure functions."""
