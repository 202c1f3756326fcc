"""The ``patchbay`` command line: parses input, calls a service, shapes the output."""

from __future__ import annotations

from patchbay.cli.main import app, main

__all__ = ["app", "main"]
