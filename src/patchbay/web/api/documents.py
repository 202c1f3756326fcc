"""``/api/v1/orgs/{org}/projects`` and ``/documents``: the stored JSON values local tools work on.

The same services as the CLI's ``doc`` verbs; a value over ``PATCHBAY_MAX_DOCUMENT_BYTES``
is refused with 413, a replace with a stale ``version`` with 409.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response
from pydantic import BaseModel, Field

from patchbay.policy.access import Action, OrgAccess
from patchbay.runtime import local_limits
from patchbay.services.documents import (
    DEFAULT_PROJECT,
    DocumentInfo,
    ProjectInfo,
    create_document,
    create_project,
    delete_document,
    delete_project,
    get_document,
    list_documents,
    list_projects,
    replace_document,
)
from patchbay.services.paging import page_of
from patchbay.store.models import MAX_DOCUMENT_VERSION, Document
from patchbay.web.api.deps import Db, Gw, Requires
from patchbay.web.api.errors import ERROR_RESPONSES
from patchbay.web.api.pagination import PageOut, Paging, page_out
from patchbay.web.api.types import Timestamp

router = APIRouter(prefix="/orgs/{org}", tags=["documents"], responses=ERROR_RESPONSES)

DocRef = Annotated[str, Path(description="Document slug or name.", min_length=1, max_length=200)]
ProjectRef = Annotated[str, Path(description="Project slug.", min_length=1, max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=200)]


class ProjectIn(BaseModel):
    name: Name
    description: Annotated[str, Field(max_length=10_000)] = ""


class ProjectOut(BaseModel):
    id: str
    name: str
    slug: str
    description: str
    documents: int


class DocumentIn(BaseModel):
    name: Name
    value: Any = Field(description="Any JSON value.")
    project: Annotated[str | None, Field(max_length=200, description="Created on demand (default: default).")] = None


class DocumentReplaceIn(BaseModel):
    value: Any = Field(description="The whole new JSON value.")
    version: Annotated[
        int | None, Field(ge=1, le=MAX_DOCUMENT_VERSION, description="Only if the document is still at this version.")
    ] = None


class DocumentSummaryOut(BaseModel):
    id: str
    name: str
    slug: str
    project: str
    version: int
    size_bytes: int
    tools: list[str]


class DocumentOut(BaseModel):
    id: str
    name: str
    slug: str
    version: int
    size_bytes: int
    updated_at: Timestamp
    value: Any


def project_out(info: ProjectInfo) -> ProjectOut:
    return ProjectOut.model_validate(info, from_attributes=True)


def summary_out(info: DocumentInfo) -> DocumentSummaryOut:
    return DocumentSummaryOut.model_validate(info, from_attributes=True)


def document_out(doc: Document) -> DocumentOut:
    """A document with its value."""
    return DocumentOut.model_validate(doc, from_attributes=True)


@router.get("/projects", summary="The org's projects")
async def projects(
    access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_READ)], session: Db, paging: Paging
) -> PageOut[ProjectOut]:
    found = await list_projects(session, org_id=access.org_id)
    return page_out(page_of(found, key=lambda p: p.id, request=paging), project_out)


@router.post("/projects", status_code=201, summary="Create a project (admins)")
async def add_project(
    body: ProjectIn, access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_MANAGE)], session: Db
) -> ProjectOut:
    project = await create_project(session, org_id=access.org_id, name=body.name, description=body.description)
    return ProjectOut(id=project.id, name=project.name, slug=project.slug, description=project.description, documents=0)


@router.delete("/projects/{project}", status_code=204, summary="Delete an empty project (admins)")
async def remove_project(
    project: ProjectRef, access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_MANAGE)], session: Db
) -> Response:
    await delete_project(session, org_id=access.org_id, name=project)
    return Response(status_code=204)


@router.get("/documents", summary="The org's documents (without their values)")
async def documents(
    access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_READ)],
    session: Db,
    paging: Paging,
    project: Annotated[str | None, Query(max_length=200, description="Only this project's documents.")] = None,
) -> PageOut[DocumentSummaryOut]:
    found = await list_documents(session, org_id=access.org_id, project=project)
    return page_out(page_of(found, key=lambda d: d.id, request=paging), summary_out)


@router.post("/documents", status_code=201, summary="Store a new document at version 1 (admins)")
async def add_document(
    body: DocumentIn, access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_MANAGE)], session: Db, gw: Gw
) -> DocumentOut:
    doc = await create_document(
        session,
        org_id=access.org_id,
        name=body.name,
        value=body.value,
        project=body.project or DEFAULT_PROJECT,
        limits=local_limits(gw.settings),
    )
    return document_out(doc)


@router.get("/documents/{document}", summary="One document with its value")
async def document(
    document: DocRef, access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_READ)], session: Db
) -> DocumentOut:
    return document_out(await get_document(session, org_id=access.org_id, name=document))


@router.put("/documents/{document}", summary="Replace a document's value; with version, only if unchanged (admins)")
async def replace(
    document: DocRef,
    body: DocumentReplaceIn,
    access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_MANAGE)],
    session: Db,
    gw: Gw,
) -> DocumentOut:
    doc = await replace_document(
        session,
        org_id=access.org_id,
        name=document,
        value=body.value,
        expected_version=body.version,
        limits=local_limits(gw.settings),
    )
    return document_out(doc)


@router.delete("/documents/{document}", status_code=204, summary="Delete a document (admins)")
async def remove_document(
    document: DocRef,
    access: Annotated[OrgAccess, Requires(Action.DOCUMENTS_MANAGE)],
    session: Db,
    force: Annotated[bool, Query(description="Also delete the document's tools.")] = False,
) -> Response:
    await delete_document(session, org_id=access.org_id, name=document, force=force)
    return Response(status_code=204)
