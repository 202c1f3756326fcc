"""Shaping results: aligned tables for people, one JSON document for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import typer


def emit_json(value: Any, *, compact: bool = False) -> None:
    """Print ``value`` as JSON (times in UTC, ``Z``-suffixed)."""
    option = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | (0 if compact else orjson.OPT_INDENT_2)
    typer.echo(orjson.dumps(value, option=option).decode())


def emit_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    """Left-aligned columns; ``empty`` is printed instead when there are no rows."""
    if not rows:
        typer.echo(empty)
        return
    widths = [max(len(headers[i]), *(len(row[i]) for row in rows)) for i in range(len(headers))]
    for line in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


def when(moment: datetime | None, *, never: str = "-") -> str:
    """A stored UTC time as ``2025-01-31 12:00Z``."""
    if moment is None:
        return never
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def plural(count: int, noun: str) -> str:
    """``1 tool`` / ``2 tools``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
