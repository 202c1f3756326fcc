"""``patchbay credential``: named shared credentials of the org, per upstream. Values go in, never out."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from patchbay.cli.output import emit_json, emit_table, when
from patchbay.cli.runtime import Env, run
from patchbay.cli.upstreams import parse_env, parse_headers
from patchbay.errors import InvalidInput
from patchbay.services.credentials import (
    CredentialSummary,
    list_shared_credentials,
    remove_shared_credential,
    save_shared_credential,
)
from patchbay.services.upstreams import get_upstream

app = typer.Typer(help="Named shared credentials that keys can call upstreams with.", no_args_is_help=True)

UpstreamArg = Annotated[str, typer.Argument(help="The upstream (slug or name).")]
NameArg = Annotated[str, typer.Argument(help="The credential's name: lowercase letters, digits, - and _.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def credential_json(summary: CredentialSummary) -> dict[str, Any]:
    """A shared credential as JSON: which names it sets, never a value."""
    return {
        "upstream": summary.upstream,
        "name": summary.name,
        "env": {name: "set" for name in summary.env},
        "headers": {name: "set" for name in summary.headers},
        "keys": summary.keys,
        "created_at": summary.created_at,
        "updated_at": summary.updated_at,
    }


@app.command("add")
def add(
    ctx: typer.Context,
    upstream: UpstreamArg,
    name: NameArg,
    bearer_stdin: Annotated[
        bool, typer.Option("--bearer-stdin", help="Read a bearer token from stdin (Authorization: Bearer ...).")
    ] = False,
    header: Annotated[list[str] | None, typer.Option("--header", help='"Name: value" (secret); repeatable.')] = None,
    env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for a stdio upstream (secret).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a shared credential, or replace its values; keys bound to it use them on their next call."""
    bearer: str | None = None
    if bearer_stdin:
        bearer = sys.stdin.readline().strip()
        if not bearer:
            raise InvalidInput("a bearer token expected on standard input, got nothing")
    env_values, header_values = parse_env(env or []), parse_headers(header or [])

    async def work(env_: Env) -> CredentialSummary:
        async with env_.transaction() as session:
            org = await env_.org(session)
            return await save_shared_credential(
                session,
                org_id=org.id,
                upstream=upstream,
                name=name,
                bearer=bearer,
                env=env_values,
                headers=header_values,
                secret=env_.secret,
            )

    summary = run(ctx, work)
    if as_json:
        emit_json(credential_json(summary))
    else:
        names = ", ".join([*summary.env, *summary.headers])
        typer.echo(f"shared credential {summary.upstream}/{summary.name} set ({names})")


@app.command("list")
def list_(
    ctx: typer.Context,
    upstream: Annotated[str | None, typer.Option("--upstream", help="Only this upstream's credentials.")] = None,
    as_json: JsonOption = False,
) -> None:
    """The org's shared credentials: names and which values are set, never the values."""

    async def work(env_: Env) -> list[CredentialSummary]:
        async with env_.transaction() as session:
            org = await env_.org(session)
            template = await get_upstream(session, slug=upstream, org_id=org.id) if upstream else None
            return await list_shared_credentials(session, org_id=org.id, secret=env_.secret, template=template)

    summaries = run(ctx, work)
    if as_json:
        emit_json([credential_json(s) for s in summaries])
        return
    emit_table(
        ["UPSTREAM", "NAME", "SET", "KEYS", "UPDATED"],
        [[s.upstream, s.name, ",".join([*s.env, *s.headers]), str(s.keys), when(s.updated_at)] for s in summaries],
        empty="no shared credentials",
    )


@app.command("remove")
def remove(ctx: typer.Context, upstream: UpstreamArg, name: NameArg) -> None:
    """Delete a shared credential; refused while an active key is bound to it."""

    async def work(env_: Env) -> None:
        async with env_.transaction() as session:
            org = await env_.org(session)
            template = await get_upstream(session, slug=upstream, org_id=org.id)
            await remove_shared_credential(session, org_id=org.id, template=template, name=name, secret=env_.secret)

    run(ctx, work)
    typer.echo(f"removed shared credential {upstream}/{name}")
