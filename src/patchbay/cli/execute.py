"""``patchbay exec``: call a tool directly, through the same pipeline as every other channel."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy import insert

from patchbay.auth.resolver import KeyResolver
from patchbay.cli.output import emit_json
from patchbay.cli.runtime import Env, run
from patchbay.engine.runner import json_size
from patchbay.pipeline import Caller, CallRecord, Executed, Operator, Pipeline, authenticate, call_tool
from patchbay.runtime import local_limits
from patchbay.services.execution import audit_event, parse_arguments, route_for
from patchbay.state import make_store
from patchbay.store.changes import Unchanging
from patchbay.store.models import AuditRecord


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
        """Execute a tool and print its result as JSON; a refused or failed call exits 1 with the reason."""

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
                records: list[CallRecord] = []
                done: Executed | None = None
                try:
                    done = await call_tool(
                        pipeline, channel="cli", caller=caller, route=route, arguments=arguments, audit=records.append
                    )
                finally:
                    size_out = json_size(done.value) if done is not None else 0
                    async with env.transaction() as session:
                        for record in records:
                            event = audit_event(record, bytes_in=json_size(arguments), bytes_out=size_out)
                            await session.execute(insert(AuditRecord).values(**event.as_row()))
                return done
            finally:
                await store.aclose()

        done = run(ctx, work)
        emit_json(done.value, compact=compact)
