"""``patchbay db``: schema maintenance."""

from __future__ import annotations

import typer
from sqlalchemy.engine import make_url

from patchbay.cli.runtime import load_settings, prepare, state_of
from patchbay.store.migrate import current_heads

app = typer.Typer(help="Database maintenance.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending schema migrations (every command does this first)."""
    url = prepare(load_settings(state_of(ctx)))
    shown = make_url(url).render_as_string(hide_password=True)
    typer.echo(f"database at revision {', '.join(current_heads())}: {shown}")
