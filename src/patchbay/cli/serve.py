"""``patchbay serve``: run the gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from patchbay.cli.runtime import load_settings, state_of


def register(app: typer.Typer) -> None:
    """Add ``serve`` to the root app (it has no sub-commands)."""
    app.command("serve")(serve)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option("--host", help="Address to listen on (PATCHBAY_HOST).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (PATCHBAY_PORT).", min=1, max=65535)] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="State directory (PATCHBAY_HOME).")] = None,
) -> None:
    """Run the gateway (default http://127.0.0.1:8420/mcp)."""
    settings = load_settings(state_of(ctx), host=host, port=port, home=data_dir)
    from patchbay.app import serve as run_gateway

    run_gateway(settings)
