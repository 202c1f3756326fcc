"""``patchbay connection``: users' OAuth connections to upstreams (never their tokens).

Connecting needs the user's browser and a signed-in session at the running gateway, so
``start`` prints the link the user opens; ``list`` and ``remove`` act on the database.
"""

from __future__ import annotations

from typing import Annotated

import typer

from patchbay.cli.output import emit_json, emit_table, when
from patchbay.cli.runtime import Env, run
from patchbay.oauth.connections import ConnectionView, list_connections, remove_connection
from patchbay.oauth.flow import oauth_client_of
from patchbay.oauth.owner import Owner
from patchbay.oauth.urls import connect_url
from patchbay.services.upstreams import get_upstream
from patchbay.services.users import get_user

app = typer.Typer(help="OAuth connections of users to upstreams.", no_args_is_help=True)

UserOption = Annotated[str, typer.Option("--user", help="Email of the user whose connection it is.")]
UpstreamArg = Annotated[str, typer.Argument(help="The OAuth upstream.")]


@app.command("list")
def list_(
    ctx: typer.Context,
    user: UserOption,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The org's OAuth upstreams and the user's connection to each (status, scopes, expiry)."""

    async def work(env: Env) -> list[ConnectionView]:
        async with env.transaction() as session:
            org = await env.org(session)
            who = await get_user(session, email=user)
            return await list_connections(session, org_id=org.id, user_id=who.id)

    views = run(ctx, work)
    if as_json:
        emit_json(
            [
                {"upstream": v.upstream, "status": v.status, "scopes": v.scopes, "expires_at": v.expires_at}
                for v in views
            ]
        )
        return
    emit_table(
        ["UPSTREAM", "STATUS", "SCOPES", "EXPIRES"],
        [[v.upstream, v.status, " ".join(v.scopes) or "-", when(v.expires_at)] for v in views],
        empty="no OAuth upstreams; add one with: patchbay upstream add NAME --url URL --oauth",
    )


@app.command("start")
def start(ctx: typer.Context, upstream: UpstreamArg) -> None:
    """Print the link a user opens (signed in to the gateway) to connect their account."""

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            template = await get_upstream(session, slug=upstream, org_id=org.id)
            await oauth_client_of(session, template)
            return connect_url(env.settings, org_slug=org.slug, upstream_slug=template.slug)

    typer.echo(run(ctx, work))


@app.command("remove")
def remove(ctx: typer.Context, upstream: UpstreamArg, user: UserOption) -> None:
    """Disconnect a user (their tokens are revoked at the provider when it can, then deleted)."""

    async def work(env: Env) -> str:
        async with env.transaction() as session:
            org = await env.org(session)
            who = await get_user(session, email=user)
            template = await get_upstream(session, slug=upstream, org_id=org.id)
            owner = Owner(template_id=template.id, org_id=org.id, user_id=who.id)
            await remove_connection(session, template=template, owner=owner, secret=env.secret, channel="cli")
            return template.slug

    typer.echo(f"removed the connection of {user} to {run(ctx, work)}")
