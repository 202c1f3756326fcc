"""``patchbay doc``: stored JSON documents that local tools read and write."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.cli.output import emit_json, emit_table, plural
from patchbay.cli.runtime import Env, run
from patchbay.engine.pointer import parse, resolve
from patchbay.engine.runner import Limits
from patchbay.errors import InvalidInput
from patchbay.runtime import local_limits
from patchbay.services.documents import (
    DocumentInfo,
    create_document,
    delete_document,
    get_document,
    list_documents,
    parse_json_text,
    replace_document,
)
from patchbay.store.models import Document

app = typer.Typer(help="Documents: stored JSON values for local tools.", no_args_is_help=True)

JsonText = Annotated[str | None, typer.Option("--json", help="The document's JSON value, inline.")]
FileOption = Annotated[Path | None, typer.Option("--file", help="Read the JSON value from this file (- for stdin).")]
OutputJson = Annotated[bool, typer.Option("--output-json", help="Print one JSON document about the result.")]


def read_value(text: str | None, file: Path | None) -> Any:
    """The JSON value of exactly one of ``--json`` and ``--file``."""
    if (text is None) == (file is None):
        raise InvalidInput("give the value with exactly one of --json and --file")
    if file is not None:
        try:
            raw = typer.get_text_stream("stdin").read() if str(file) == "-" else file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"cannot read {file}: {exc}") from None
        return parse_json_text(raw)
    assert text is not None
    return parse_json_text(text)


def doc_json(doc: Document, *, project: str | None = None) -> dict[str, Any]:
    """A document's metadata as JSON (not its value)."""
    out: dict[str, Any] = {
        "id": doc.id,
        "name": doc.name,
        "slug": doc.slug,
        "version": doc.version,
        "size_bytes": doc.size_bytes,
    }
    if project is not None:
        out["project"] = project
    return out


def _write_and_report(
    ctx: typer.Context,
    verb: str,
    write: Callable[[AsyncSession, str, Limits], Awaitable[Document]],
    *,
    as_json: bool,
    project: str | None = None,
) -> None:
    """Run one document write in the org, then say what it did (or print its metadata as JSON)."""

    async def work(env: Env) -> Document:
        async with env.transaction() as session:
            org = await env.org(session)
            return await write(session, org.id, local_limits(env.settings))

    doc = run(ctx, work)
    if as_json:
        emit_json(doc_json(doc, project=project))
    else:
        typer.echo(f"{verb} document {doc.slug} (version {doc.version}, {plural(doc.size_bytes, 'byte')})")


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Document name.")],
    text: JsonText = None,
    file: FileOption = None,
    project: Annotated[str | None, typer.Option("--project", help="Project (created on demand).")] = None,
    as_json: OutputJson = False,
) -> None:
    """Store a new JSON document (version 1)."""
    value = read_value(text, file)

    async def write(session: AsyncSession, org_id: str, limits: Limits) -> Document:
        return await create_document(session, org_id=org_id, name=name, value=value, project=project, limits=limits)

    _write_and_report(ctx, "created", write, as_json=as_json, project=project or "default")


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Document name.")],
    path: Annotated[str, typer.Option("--path", help="Only the value at this JSON pointer.")] = "",
    compact: Annotated[bool, typer.Option("--compact", help="One line of JSON.")] = False,
) -> None:
    """Print a document's JSON value (or the part at --path); its version goes to stderr."""
    tokens = parse(path)

    async def work(env: Env) -> Document:
        async with env.transaction() as session:
            org = await env.org(session)
            return await get_document(session, org_id=org.id, name=name)

    doc = run(ctx, work)
    emit_json(resolve(doc.value, tokens), compact=compact)
    typer.echo(f"document {doc.slug}, version {doc.version}", err=True)


@app.command("list")
def list_(
    ctx: typer.Context,
    project: Annotated[str | None, typer.Option("--project", help="Only this project's documents.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The organization's documents."""

    async def work(env: Env) -> list[DocumentInfo]:
        async with env.transaction() as session:
            org = await env.org(session)
            return await list_documents(session, org_id=org.id, project=project)

    docs = run(ctx, work)
    if as_json:
        emit_json(
            [
                {
                    "id": d.id,
                    "name": d.name,
                    "slug": d.slug,
                    "project": d.project,
                    "version": d.version,
                    "size_bytes": d.size_bytes,
                    "tools": list(d.tools),
                }
                for d in docs
            ]
        )
        return
    emit_table(
        ["DOCUMENT", "PROJECT", "VERSION", "BYTES", "TOOLS"],
        [[d.slug, d.project, str(d.version), str(d.size_bytes), ",".join(d.tools) or "-"] for d in docs],
        empty="no documents",
    )


@app.command("replace")
def replace(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Document name.")],
    text: JsonText = None,
    file: FileOption = None,
    version: Annotated[int | None, typer.Option("--version", help="Only if the document is at this version.")] = None,
    as_json: OutputJson = False,
) -> None:
    """Store a whole new value (the version goes up by one)."""
    value = read_value(text, file)

    async def write(session: AsyncSession, org_id: str, limits: Limits) -> Document:
        return await replace_document(
            session, org_id=org_id, name=name, value=value, expected_version=version, limits=limits
        )

    _write_and_report(ctx, "replaced", write, as_json=as_json)


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Document name.")],
    force: Annotated[bool, typer.Option("--force", help="Also delete the document's tools.")] = False,
) -> None:
    """Delete a document (refused while it has tools, unless --force)."""

    async def work(env: Env) -> list[str]:
        async with env.transaction() as session:
            org = await env.org(session)
            return await delete_document(session, org_id=org.id, name=name, force=force)

    removed = run(ctx, work)
    extra = f" and {plural(len(removed), 'tool')} ({', '.join(removed)})" if removed else ""
    typer.echo(f"deleted document {name}{extra}")
