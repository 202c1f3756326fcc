"""Domain operations shared by the CLI and the REST API.

Plain async functions with keyword-only arguments, an ``AsyncSession`` first. They
flush but never commit: the caller owns the transaction. They raise
``patchbay.errors`` exceptions with one-line reasons a person can act on.
"""
