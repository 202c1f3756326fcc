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
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"


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


class Tool(Timestamped, Base):
    """One tool with its own id; an upstream tool belongs to a template."""

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
    status: Mapped[str] = mapped_column(String(20), default="active")  # active / quarantined / removed
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # While quarantined: what the upstream now offers, waiting for an admin's approval.
    pending_definition: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    pending_hash: Mapped[str | None] = mapped_column(String(64))

    template: Mapped[ServerTemplate | None] = relationship(back_populates="tools")

    @property
    def read_only(self) -> bool:
        return bool((self.annotations or {}).get("readOnlyHint", False))


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

    permissions: Mapped[list[ApiKeyToolPermission]] = relationship(cascade="all, delete-orphan")


class ApiKeyToolPermission(Timestamped, Base):
    """Key × tool → read (tools annotated read-only) and/or write (everything else)."""

    __tablename__ = "api_key_tool_permissions"
    __table_args__ = (UniqueConstraint("api_key_id", "tool_id"),)

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    tool_id: Mapped[str] = mapped_column(ForeignKey("tools.id", ondelete="CASCADE"), index=True)
    can_read: Mapped[bool] = mapped_column(Boolean, default=True)
    can_write: Mapped[bool] = mapped_column(Boolean, default=False)


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
