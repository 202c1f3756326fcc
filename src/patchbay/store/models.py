"""SQLAlchemy models: the durable state of a Patchbay installation.

Ids are 32-character hex strings whose first 12 characters are a millisecond
timestamp, so they sort by creation time (audit pagination relies on it).
Every table has ``created_at``/``updated_at``. Secret values never sit in a
column in plaintext: keys are stored as keyed hashes, configuration values as
authenticated ciphertext tagged with their key id.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A time-ordered random id: 48 bits of milliseconds, 80 random bits, as hex."""
    return f"{time.time_ns() // 1_000_000:012x}{random_hex()}"


# Random bits drawn from the OS 4 KiB at a time: one getrandom() call per id was a visible share
# of a proxied call (each request stores an audit record with a fresh id). Each size has its own
# iterator over ready-made hex strings: ``next`` on a list iterator is one step under the GIL, so
# threads need no lock (two that refill at once each make a pool of fresh bytes; one is kept).
_POOLS: dict[int, Iterator[str]] = {}


def random_hex(nbytes: int = 10) -> str:
    """``nbytes`` (at most 4096) of OS randomness as hex, from the process's pool for that size."""
    try:
        return next(_POOLS[nbytes])
    except (KeyError, StopIteration):
        width = 2 * nbytes
        raw = os.urandom(4096 // nbytes * nbytes).hex()
        pool = _POOLS[nbytes] = iter([raw[i : i + width] for i in range(0, len(raw), width)])
        return next(pool)


# A forked child must not hand out the bytes its parent hands out too.
os.register_at_fork(after_in_child=_POOLS.clear)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, list[str]: JSON}


class Timestamped:
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


# --- people ---------------------------------------------------------------------------------


class User(Timestamped, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(200), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # Bumped when the password changes: login sessions carry the epoch they started in.
    session_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class PersonalAccessToken(Timestamped, Base):
    """A user's token for scripts and the remote CLI. Only the keyed hash of the secret is stored."""

    __tablename__ = "personal_access_tokens"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Organization(Timestamped, Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    is_personal: Mapped[bool] = mapped_column(Boolean, default=False)


class Membership(Timestamped, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("org_id", "user_id"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default="member")  # owner / admin / member


# --- catalog ----------------------------------------------------------------------------------


class ServerTemplate(Timestamped, Base):
    """One upstream MCP server as a catalog entry (``patchbay upstream add`` creates one)."""

    __tablename__ = "server_templates"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    icon: Mapped[str | None] = mapped_column(String(500))
    transport: Mapped[str] = mapped_column(String(20))  # stdio / streamable_http / sse
    command: Mapped[list[str] | None] = mapped_column(JSON)
    url: Mapped[str | None] = mapped_column(String(2000))
    required_keys: Mapped[list[str]] = mapped_column(JSON, default=list)
    auth_kind: Mapped[str] = mapped_column(String(20), default="none")  # none / static / oauth
    visibility: Mapped[str] = mapped_column(String(20), default="org")  # public / org / private
    # What the last successful connection learned: era, serverInfo, capabilities, instructions.
    protocol_version: Mapped[str | None] = mapped_column(String(20))
    server_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    capabilities: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    instructions: Mapped[str | None] = mapped_column(Text)
    last_synced_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    tools: Mapped[list[Tool]] = relationship(back_populates="template", cascade="all, delete-orphan")


class TemplateConfig(Timestamped, Base):
    """Encrypted env vars / headers of a template, for a whole org (user null) or one user."""

    __tablename__ = "template_configs"
    __table_args__ = (UniqueConstraint("template_id", "org_id", "user_id"),)

    template_id: Mapped[str] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    ciphertext: Mapped[str] = mapped_column(Text)  # "kid:base64(nonce+ct)" of {"env": {...}, "headers": {...}}


class SharedCredential(Timestamped, Base):
    """A named credential of an org for one template (env vars / headers), encrypted like a TemplateConfig.

    Keys choose it by name (``shared:NAME``); a shared key calls with it whoever holds the key.
    """

    __tablename__ = "shared_credentials"
    __table_args__ = (UniqueConstraint("org_id", "template_id", "name"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    ciphertext: Mapped[str] = mapped_column(Text)  # same shape as TemplateConfig.ciphertext


class OAuthClient(Timestamped, Base):
    """How the gateway is known to an upstream's OAuth authorization server (one per template)."""

    __tablename__ = "oauth_clients"

    template_id: Mapped[str] = mapped_column(
        ForeignKey("server_templates.id", ondelete="CASCADE"), unique=True, index=True
    )
    resource: Mapped[str] = mapped_column(String(2000))  # RFC 8707 resource indicator (the upstream's URL)
    issuer: Mapped[str] = mapped_column(String(2000))
    authorization_endpoint: Mapped[str] = mapped_column(String(2000))
    token_endpoint: Mapped[str] = mapped_column(String(2000))
    revocation_endpoint: Mapped[str | None] = mapped_column(String(2000))
    client_id: Mapped[str] = mapped_column(String(2000))
    # "kid:..." of {"secret": ...}; None for a public client (metadata document, or DCR without secret).
    secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    auth_method: Mapped[str] = mapped_column(String(40), default="none")  # token endpoint auth method
    registration: Mapped[str] = mapped_column(String(20))  # pre_registered / metadata_document / dynamic
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)


class OAuthToken(Timestamped, Base):
    """One connection: the tokens an OAuth client holds for a user (or a shared name) in an org."""

    __tablename__ = "oauth_tokens"
    __table_args__ = (UniqueConstraint("template_id", "org_id", "user_id", "shared_name"),)

    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    shared_name: Mapped[str | None] = mapped_column(String(100))
    purpose: Mapped[str] = mapped_column(String(10), default="user")  # user / shared
    # "kid:..." of {"access_token": ..., "refresh_token": ...}, bound to this row (see oauth.tokens).
    ciphertext: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(10), default="active")  # active / dead (refresh refused)


class EncryptionKey(Timestamped, Base):
    """One generation of the config-encryption key (derived from the server secret); the highest is current."""

    __tablename__ = "encryption_keys"

    generation: Mapped[int] = mapped_column(Integer, unique=True)
    kid: Mapped[str] = mapped_column(String(16))


class Tool(Timestamped, Base):
    """One tool with its own id: an upstream tool belongs to a template, a local tool to a
    document (through its ``LocalTool`` row)."""

    __tablename__ = "tools"
    __table_args__ = (UniqueConstraint("template_id", "name"),)

    template_id: Mapped[str | None] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    title: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    input_schema: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    annotations: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # The upstream's whole tool object, so tools/list passes it on unchanged.
    definition: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    definition_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), default="active")  # active / quarantined / rejected / removed
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Calls per minute across every channel and key; None: unlimited.
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    # While quarantined: what the upstream now offers, waiting for an admin's approval.
    pending_definition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pending_hash: Mapped[str | None] = mapped_column(String(64))

    template: Mapped[ServerTemplate | None] = relationship(back_populates="tools")
    local: Mapped[LocalTool | None] = relationship(back_populates="tool", uselist=False, cascade="all, delete-orphan")

    @property
    def read_only(self) -> bool:
        return bool((self.annotations or {}).get("readOnlyHint", False))


# --- documents and local tools -------------------------------------------------------------


class Project(Timestamped, Base):
    """A folder of documents inside an org."""

    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")


MAX_DOCUMENT_VERSION = 2**31 - 1  # the column is a 32-bit integer on PostgreSQL


class Document(Timestamped, Base):
    """A stored JSON value. ``version`` grows by one with every write (compare-and-swap guard)."""

    __tablename__ = "documents"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    value: Mapped[Any] = mapped_column(JSON(none_as_null=False), nullable=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)


class LocalTool(Timestamped, Base):
    """What makes a ``Tool`` local: a document, an RFC 6901 pointer into it, and an operation."""

    __tablename__ = "local_tools"
    __table_args__ = (UniqueConstraint("document_id", "path", "kind"), UniqueConstraint("org_id", "name"))

    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), unique=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    # Mirrors tools.name so that the database itself keeps local tool names unique per org.
    name: Mapped[str] = mapped_column(String(200))
    document_id: Mapped[str] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(10))  # query / get / create / update / delete
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    tool: Mapped[Tool] = relationship(back_populates="local")
    document: Mapped[Document] = relationship()


class ToolAccessKey(Timestamped, Base):
    """A key to one tool (``tk_``), with scopes execute / read / admin. Only its keyed hash is stored."""

    __tablename__ = "tool_access_keys"

    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate_limit: Mapped[int | None] = mapped_column(Integer)


# --- servers --------------------------------------------------------------------------------


class Server(Timestamped, Base):
    """A user-facing MCP server of an org: templates (N:M) and an allow-list of tools (N:M)."""

    __tablename__ = "servers"
    __table_args__ = (UniqueConstraint("org_id", "slug"),)

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="running")  # pending / running / stopped
    plain_names: Mapped[bool] = mapped_column(Boolean, default=False)
    # Whether tools an upstream adds later start enabled on this server ("enabled" / "disabled").
    new_tools: Mapped[str] = mapped_column(String(10), default="disabled", server_default="disabled")
    # Compact mode: clients see a search tool and a call tool instead of every definition.
    compact: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Request and response bodies of this server's calls go to object storage (redacted, capped).
    capture_payloads: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # Bumped on every change that alters what the server exposes; caches key on it.
    revision: Mapped[int] = mapped_column(Integer, default=1)

    templates: Mapped[list[ServerTemplateLink]] = relationship(
        cascade="all, delete-orphan", order_by="ServerTemplateLink.position"
    )
    tools: Mapped[list[ServerTool]] = relationship(cascade="all, delete-orphan")


class ServerTemplateLink(Timestamped, Base):
    __tablename__ = "server_template_links"
    __table_args__ = (UniqueConstraint("server_id", "template_id"),)

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)

    template: Mapped[ServerTemplate] = relationship()


class ServerTool(Timestamped, Base):
    __tablename__ = "server_tools"
    __table_args__ = (UniqueConstraint("server_id", "tool_id"),)

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    override_name: Mapped[str | None] = mapped_column(String(200))
    override_description: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    tool: Mapped[Tool] = relationship()


# --- keys -----------------------------------------------------------------------------------


class ApiKey(Timestamped, Base):
    """A key to one server, owned by a user. Only the keyed hash of the secret is stored."""

    __tablename__ = "api_keys"

    org_id: Mapped[str] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    all_tools: Mapped[bool] = mapped_column(Boolean, default=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rate_limit: Mapped[int | None] = mapped_column(Integer)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    # Not personal: calls with the shared credentials bound to it (never its owner's own), whoever holds it.
    shared: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    permissions: Mapped[list[ApiKeyToolPermission]] = relationship(cascade="all, delete-orphan")
    credentials: Mapped[list[ApiKeyCredential]] = relationship(cascade="all, delete-orphan")


class ApiKeyToolPermission(Timestamped, Base):
    """Key × tool → read (tools annotated read-only) and/or write (everything else)."""

    __tablename__ = "api_key_tool_permissions"
    __table_args__ = (UniqueConstraint("api_key_id", "tool_id"),)

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    can_read: Mapped[bool] = mapped_column(Boolean, default=True)
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiKeyCredential(Timestamped, Base):
    """Key × template → the credential the key calls that upstream with (no row: the default choice)."""

    __tablename__ = "api_key_credentials"
    __table_args__ = (UniqueConstraint("api_key_id", "template_id"),)

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    template_id: Mapped[str] = mapped_column(ForeignKey("server_templates.id", ondelete="CASCADE"), index=True)
    source: Mapped[str] = mapped_column(String(10))  # own / org / shared
    shared_credential_id: Mapped[str | None] = mapped_column(
        ForeignKey("shared_credentials.id", ondelete="CASCADE"), index=True
    )


# --- change tracking ----------------------------------------------------------------------


class ChangeCounter(Base):
    """One row whose value grows with every change to keys or servers; gateways poll it on SQLite."""

    __tablename__ = "change_counter"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


# --- audit ----------------------------------------------------------------------------------


class AuditRecord(Base):
    """One row per call on any channel, and per security event."""

    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_server_created", "server_id", "created_at"),
        Index("ix_audit_records_org_created", "org_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    org_id: Mapped[str | None] = mapped_column(String(32))
    server_id: Mapped[str | None] = mapped_column(String(32))
    api_key_id: Mapped[str | None] = mapped_column(String(32))
    key_prefix: Mapped[str | None] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(String(32))
    auth_method: Mapped[str | None] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(10), default="mcp")  # mcp / api / cli
    transport: Mapped[str | None] = mapped_column(String(20))
    method: Mapped[str | None] = mapped_column(String(100))
    tool_name: Mapped[str | None] = mapped_column(String(200))
    tool_id: Mapped[str | None] = mapped_column(String(32))
    http_status: Mapped[int] = mapped_column(Integer, default=200)
    error_code: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="ok")  # ok / error / denied
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)
    bytes_in: Mapped[int] = mapped_column(Integer, default=0)
    bytes_out: Mapped[int] = mapped_column(Integer, default=0)
    user_agent: Mapped[str | None] = mapped_column(String(500))
    request_id: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str | None] = mapped_column(String(50))  # security events: key.created, key.revoked, ...
    detail: Mapped[str | None] = mapped_column(String(200))  # what a security event changed, in a few words
    payload_key: Mapped[str | None] = mapped_column(String(500))
    payload_stored_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Which upstream credential the call used: "own", "org" or "shared:NAME" (never the secret).
    credential: Mapped[str | None] = mapped_column(String(80))
