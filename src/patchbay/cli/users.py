"""``patchbay user``: accounts."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from patchbay.cli.output import emit_json
from patchbay.cli.runtime import Env, run
from patchbay.errors import InvalidInput
from patchbay.services.users import create_user

app = typer.Typer(help="Manage users.", no_args_is_help=True)


@app.command("create")
def create(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="The user's email address.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a password from standard input.")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Create a user (with a personal organization; also a member of the default one)."""
    password: str | None = None
    if password_stdin:
        # One trailing newline is the terminal's, not the password's.
        password = sys.stdin.read().removesuffix("\n").removesuffix("\r")
        if not password:
            raise InvalidInput("--password-stdin given but standard input is empty")

    async def work(env: Env) -> dict[str, object]:
        async with env.transaction() as session:
            user = await create_user(session, email=email, password=password, admin=admin)
            return {
                "id": user.id,
                "email": user.email,
                "admin": user.is_admin,
                "password": password is not None,
            }

    created = run(ctx, work)
    if as_json:
        emit_json(created)
    else:
        role = "admin" if admin else "user"
        typer.echo(f"created {role} {created['email']}")
