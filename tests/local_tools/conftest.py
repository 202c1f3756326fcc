"""The CLI fixture of tests/cli, for tests that drive the CLI beside a running gateway."""

from __future__ import annotations

from tests.cli.conftest import cli

__all__ = ["cli"]
