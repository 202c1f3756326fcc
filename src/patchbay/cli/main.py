"""The ``patchbay`` command: a root with global options, one sub-command group per noun.

Every failure a person can cause ends as one ``error: ...`` line on stderr and a
non-zero exit (2 for usage mistakes, 1 for everything else), never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from typer.core import TyperGroup

from patchbay.cli import (
    connections,
    credentials,
    db,
    docs,
    execute,
    keys,
    logs,
    remote,
    secrets,
    serve,
    servers,
    toolkeys,
    tools,
    upstreams,
    users,
)
from patchbay.cli.runtime import CliState
from patchbay.errors import PatchbayError


def _fail(message: str, code: int) -> NoReturn:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    typer.echo(f"error: {first_line}", err=True)
    sys.exit(code)


class PatchbayGroup(TyperGroup):
    """Turns every expected failure into one line on stderr, whoever invokes the command."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except typer.TyperException as exc:  # the vendored click's errors: usage mistakes, bad values
            if type(exc).__name__ == "NoArgsIsHelpError":
                # A group called without a sub-command: show its help the way click does.
                getattr(exc, "show", lambda: None)()
                sys.exit(exc.exit_code)
            ctx: Any = getattr(exc, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            _fail(f"{where}{exc.format_message()}", exc.exit_code)
        except typer.Abort:
            _fail("aborted", 1)
        except PatchbayError as exc:
            _fail(str(exc), 1)
        except IntegrityError:
            _fail("the change conflicts with a concurrent one (it may already exist); try again", 1)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc)
            _fail(f"database: {reason}", 1)
        # Without standalone mode click returns an explicit exit code instead of exiting.
        code = result if isinstance(result, int) else 0
        if standalone_mode:
            sys.exit(code)
        return result


app = typer.Typer(
    cls=PatchbayGroup,
    name="patchbay",
    help="Patchbay: a multi-tenant gateway for the Model Context Protocol.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    pretty_exceptions_show_locals=False,  # locals can hold secrets
    add_completion=False,
)


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="State directory (default ./.patchbay, or PATCHBAY_HOME)."),
    ] = None,
    org: Annotated[str, typer.Option("--org", help="Organization to act in (slug).")] = "default",
) -> None:
    """Patchbay: a multi-tenant gateway for the Model Context Protocol."""
    ctx.obj = CliState(data_dir=data_dir, org=org)


serve.register(app)
remote.register(app)
app.add_typer(users.app, name="user")
app.add_typer(upstreams.app, name="upstream")
app.add_typer(servers.app, name="server")
app.add_typer(keys.app, name="key")
app.add_typer(credentials.app, name="credential")
app.add_typer(connections.app, name="connection")
app.add_typer(tools.app, name="tool")
app.add_typer(toolkeys.app, name="toolkey")
app.add_typer(docs.app, name="doc")
execute.register(app)
app.add_typer(db.app, name="db")
app.add_typer(logs.app, name="logs")
app.add_typer(secrets.app, name="secrets")


def main() -> None:
    """Console script entry point (also ``python -m patchbay``, which should read the same)."""
    app(prog_name="patchbay")
