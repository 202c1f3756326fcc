"""``patchbay secrets``: rotate the key that encrypts upstream env vars and headers."""

from __future__ import annotations

from typing import Annotated

import typer

from patchbay.cli.output import emit_json
from patchbay.cli.runtime import Env, run
from patchbay.services.secrets import KeyStatus, Rotation, key_status, rotate

app = typer.Typer(help="Encryption of stored secrets.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


@app.command("rotate")
def rotate_(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Re-encrypt every stored value under a new key (running gateways keep working throughout)."""

    async def work(env: Env) -> Rotation:
        async with env.transaction() as session:
            return await rotate(session, secret=env.secret)

    done = run(ctx, work)
    if as_json:
        emit_json({"generation": done.generation, "kid": done.kid, "rewritten": done.rewritten})
        return
    typer.echo(f"now encrypting under key {done.kid} (generation {done.generation}); re-encrypted {done.rewritten}")


@app.command("status")
def status(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """The current key, and how many stored values each key id seals."""

    async def work(env: Env) -> KeyStatus:
        async with env.transaction() as session:
            return await key_status(session, secret=env.secret)

    found = run(ctx, work)
    generation, kid, counts = found.generation, found.kid, found.values_by_kid
    if as_json:
        emit_json({"generation": generation, "kid": kid, "values_by_kid": counts})
        return
    typer.echo(f"current key {kid} (generation {generation})")
    for other, count in sorted(counts.items()):
        typer.echo(f"  {other}: {count} value(s){'' if other == kid else '  <- run: patchbay secrets rotate'}")
