"""Projects and documents: named JSON values of an org, versioned for optimistic concurrency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.engine.runner import Limits, check_document_size, json_size
from patchbay.errors import Conflict, InvalidInput, NotFound
from patchbay.services.revisions import bump_servers
from patchbay.services.slugs import require_slug, slugify
from patchbay.store.models import MAX_DOCUMENT_VERSION, Document, LocalTool, Project, Server, ServerTool, Tool, utcnow

DEFAULT_PROJECT = "default"
MAX_DOCUMENT_SLUG = 64


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """A document without its value, as lists show it."""

    id: str
    name: str
    slug: str
    project: str
    version: int
    size_bytes: int
    tools: tuple[str, ...]


def parse_json_text(text: str, *, what: str = "document") -> Any:
    """A JSON value from text, or InvalidInput naming where parsing failed."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the {what} is not valid JSON: {exc}") from None


async def get_project(session: AsyncSession, *, org_id: str, name: str, create: bool = False) -> Project:
    """The org's project ``name`` (by slug); created on demand when ``create``."""
    slug = require_slug(name, what="project", max_length=64)
    found = await session.scalar(select(Project).where(Project.org_id == org_id, Project.slug == slug))
    if found is not None:
        return found
    if not create:
        raise NotFound(f"project {name!r} does not exist")
    project = Project(org_id=org_id, name=name.strip(), slug=slug)
    session.add(project)
    await session.flush()
    return project


@dataclass(frozen=True, slots=True)
class ProjectInfo:
    """A project with the number of its documents."""

    id: str
    name: str
    slug: str
    description: str
    documents: int


async def create_project(session: AsyncSession, *, org_id: str, name: str, description: str = "") -> Project:
    """A new project; refused when its slug is taken."""
    slug = require_slug(name, what="project", max_length=64)
    if await session.scalar(select(Project.id).where(Project.org_id == org_id, Project.slug == slug)):
        raise Conflict(f"project {slug!r} already exists")
    project = Project(org_id=org_id, name=name.strip(), slug=slug, description=description.strip())
    session.add(project)
    await session.flush()
    return project


async def list_projects(session: AsyncSession, *, org_id: str) -> list[ProjectInfo]:
    """The org's projects by slug, with how many documents each holds."""
    counts = (
        select(Document.project_id, func.count().label("n"))
        .where(Document.org_id == org_id)
        .group_by(Document.project_id)
    ).subquery()
    rows = await session.execute(
        select(Project, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.project_id == Project.id)
        .where(Project.org_id == org_id)
        .order_by(Project.slug)
    )
    return [ProjectInfo(p.id, p.name, p.slug, p.description, int(n)) for p, n in rows.all()]


async def delete_project(session: AsyncSession, *, org_id: str, name: str) -> None:
    """Delete an empty project."""
    project = await get_project(session, org_id=org_id, name=name)
    if await session.scalar(select(Document.id).where(Document.project_id == project.id).limit(1)):
        raise Conflict(f"project {project.slug} still has documents; delete or move them first")
    await session.delete(project)
    await session.flush()


async def create_document(
    session: AsyncSession, *, org_id: str, name: str, value: Any, project: str | None, limits: Limits
) -> Document:
    """A new document at version 1; refused when the name is taken or the value is too large."""
    clean = name.strip()
    slug = require_slug(clean, what="document", max_length=MAX_DOCUMENT_SLUG)
    if await session.scalar(select(Document.id).where(Document.org_id == org_id, Document.slug == slug)):
        raise Conflict(f"document {slug!r} already exists; replace it with 'doc replace'")
    size = json_size(value)
    check_document_size(size, limits, name=slug)
    owner = await get_project(session, org_id=org_id, name=project or DEFAULT_PROJECT, create=True)
    doc = Document(org_id=org_id, project_id=owner.id, name=clean, slug=slug, value=value, version=1, size_bytes=size)
    session.add(doc)
    await session.flush()
    return doc


async def get_document(session: AsyncSession, *, org_id: str, name: str) -> Document:
    """The org's document called ``name`` (its slug or exact name)."""
    wanted = name.strip()
    found = await session.scalar(
        select(Document).where(
            Document.org_id == org_id,
            (Document.slug == slugify(wanted, max_length=MAX_DOCUMENT_SLUG)) | (Document.name == wanted),
        )
    )
    if found is None:
        raise NotFound(f"document {wanted!r} does not exist")
    return found


async def list_documents(session: AsyncSession, *, org_id: str, project: str | None = None) -> list[DocumentInfo]:
    """The org's documents (or one project's) by slug, with the names of their tools."""
    query = (
        select(Document.id, Document.name, Document.slug, Project.slug, Document.version, Document.size_bytes)
        .join(Project, Project.id == Document.project_id)
        .where(Document.org_id == org_id)
        .order_by(Document.slug)
    )
    if project is not None:
        query = query.where(Project.id == (await get_project(session, org_id=org_id, name=project)).id)
    rows = (await session.execute(query)).all()
    tools: dict[str, list[str]] = {}
    for doc_id, tool_name in await session.execute(
        select(LocalTool.document_id, LocalTool.name).where(LocalTool.org_id == org_id).order_by(LocalTool.name)
    ):
        tools.setdefault(doc_id, []).append(tool_name)
    return [
        DocumentInfo(
            id=doc_id,
            name=name,
            slug=slug,
            project=project_slug,
            version=version,
            size_bytes=size,
            tools=tuple(tools.get(doc_id, ())),
        )
        for doc_id, name, slug, project_slug, version, size in rows
    ]


async def replace_document(
    session: AsyncSession, *, org_id: str, name: str, value: Any, expected_version: int | None, limits: Limits
) -> Document:
    """Store a whole new value (version + 1); with ``expected_version``, only if nobody wrote since."""
    doc = await get_document(session, org_id=org_id, name=name)
    size = json_size(value)
    check_document_size(size, limits, name=doc.slug)
    if expected_version is not None and not 1 <= expected_version <= MAX_DOCUMENT_VERSION:
        # No document can be at such a version (and the database would refuse the comparison).
        raise Conflict(f"document {doc.slug} changed: it is at version {doc.version}, not {expected_version}")
    seen = doc.version if expected_version is None else expected_version
    stored = await session.execute(
        update(Document)
        .where(Document.id == doc.id, Document.version == seen)
        .values(value=value, version=seen + 1, size_bytes=size, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if stored.rowcount != 1:  # type: ignore[attr-defined]
        current = await session.scalar(select(Document.version).where(Document.id == doc.id))
        raise Conflict(f"document {doc.slug} changed: it is at version {current}, not {seen}")
    await session.refresh(doc)
    return doc


async def delete_document(session: AsyncSession, *, org_id: str, name: str, force: bool) -> list[str]:
    """Delete a document; its tools go with it only when ``force`` (returns their names)."""
    doc = await get_document(session, org_id=org_id, name=name)
    locals_ = (
        await session.scalars(select(LocalTool).where(LocalTool.document_id == doc.id).order_by(LocalTool.name))
    ).all()
    names = [lt.name for lt in locals_]
    if names and not force:
        raise Conflict(
            f"document {doc.slug} has tools ({', '.join(names)}); delete them first, or force it (--force, ?force=true)"
        )
    tool_ids = [lt.tool_id for lt in locals_]
    if tool_ids:
        await bump_servers(session, servers_with(tool_ids))
        for tool in (await session.scalars(select(Tool).where(Tool.id.in_(tool_ids)))).all():
            await session.delete(tool)
    await session.delete(doc)
    await session.flush()
    return names


def servers_with(tool_ids: list[str]) -> ColumnElement[bool]:
    """Matches the servers that have any of ``tool_ids`` attached (whose catalogs change with them)."""
    return Server.id.in_(select(ServerTool.server_id).where(ServerTool.tool_id.in_(tool_ids)))
