"""``patchbay exec``: call a tool directly, through the same pipeline as every other channel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import typer
from sqlalchemy import insert

from patchbay.audit.events import AuditEvent
from patchbay.auth.resolver import KeyResolver
from patchbay.cli.output import emit_json
from patchbay.cli.runtime import Env, run
from patchbay.pipeline import Caller, Executed, Operator, Pipeline, authenticate
from patchbay.routing.catalog import ToolRoute
from patchbay.routing.upstream.pool import UpstreamPool
from patchbay.runtime import local_limits
from patchbay.services.execution import execute_direct, parse_arguments, route_for
from patchbay.settings import Settings
from patchbay.state import make_store
from patchbay.store.changes import Unchanging
from patchbay.store.models import AuditRecord


@asynccontextmanager
async def _pool_for(settings: Settings, route: ToolRoute) -> AsyncIterator[UpstreamPool | None]:
    """A pool for this one call when it goes upstream (its stdio process ends with the command)."""
    if route.upstream is None:
        yield None
        return
    pool = UpstreamPool(
        max_stdio_processes=1,
        idle_seconds=settings.stdio_idle_seconds,
        connect_timeout=settings.upstream_connect_timeout,
    )
    try:
        yield pool
    finally:
        await pool.aclose()


def register(app: typer.Typer) -> None:
    """Add ``exec`` to the root command."""

    @app.command("exec")
    def exec_(
        ctx: typer.Context,
        tool: Annotated[
            str,
            typer.Argument(
                help="The tool: a local tool name or a tool id (with --key pb_...: the name the key's server exposes)."
            ),
        ],
        arg: Annotated[list[str] | None, typer.Option("--arg", help="KEY=VALUE argument; repeatable.")] = None,
        json_args: Annotated[str | None, typer.Option("--json", help="Arguments as one JSON object.")] = None,
        key: Annotated[
            str | None, typer.Option("--key", help="Call as this tool key (tk_...) or API key (pb_...).")
        ] = None,
        compact: Annotated[bool, typer.Option("--compact", help="Print the result as one line.")] = False,
    ) -> None:
        """Execute a tool (local, or forwarded to its upstream) and print its result as JSON; a refused or
        failed call exits 1 with the reason."""

        async def work(env: Env) -> Executed:
            assert env.engine is not None  # run() always provides it
            store = make_store(env.settings)
            pipeline = Pipeline(env.engine, env.sessionmaker, store, local_limits(env.settings))
            try:
                caller: Caller
                if key is not None:
                    resolver = KeyResolver(env.sessionmaker, env.secret, Unchanging())
                    caller = await authenticate(pipeline, credential=key.strip(), resolver=resolver, secret=env.secret)
                else:
                    async with env.transaction() as session:
                        caller = Operator(org_id=(await env.org(session)).id)
                async with env.sessionmaker() as session:
                    route = await route_for(session, caller=caller, tool=tool, secret=env.secret)
                schema = route.definition.get("inputSchema")
                schema = schema if isinstance(schema, dict) else {}
                arguments = parse_arguments(base=json_args, pairs=arg or [], schema=schema)

                async def keep(event: AuditEvent) -> None:
                    async with env.transaction() as session:
                        await session.execute(insert(AuditRecord).values(**event.as_row()))

                async with _pool_for(env.settings, route) as pool:
                    return await execute_direct(
                        pipeline,
                        channel="cli",
                        caller=caller,
                        route=route,
                        arguments=arguments,
                        pool=pool,
                        timeout=env.settings.upstream_timeout,
                        keep=keep,
                    )
            finally:
                await store.aclose()

        done = run(ctx, work)
        emit_json(done.value, compact=compact)
