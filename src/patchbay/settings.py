"""Settings, read once from the environment (prefix ``PATCHBAY_``) and passed down."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_PLACEHOLDERS = {"", "changeme", "change-me", "secret", "password", "xxx", "todo"}


class Settings(BaseSettings):
    """Every knob of a Patchbay process; all optional, embedded defaults need no service."""

    model_config = SettingsConfigDict(env_prefix="PATCHBAY_", extra="ignore")

    home: Path = Field(default=Path(".patchbay"), description="data dir: SQLite db, objects, secret key")
    host: str = "127.0.0.1"
    port: int = 8420
    database_url: str | None = None
    redis_url: str | None = None
    object_store_url: str | None = None
    secret_key: str | None = None
    public_url: str | None = None
    # How long an OAuth authorization started by a user may take before its callback is refused.
    oauth_state_ttl_seconds: float = Field(default=600.0, gt=0)
    environment: str = "development"

    # Trust X-Forwarded-* from a reverse proxy (off: nothing on the request path reads them yet).
    trust_proxy_headers: bool = False

    # Edge limits.
    max_body_bytes: int = 4 * 1024 * 1024
    allowed_hosts: list[str] = Field(default_factory=list)
    allowed_origins: list[str] = Field(default_factory=list)

    # Upstreams.
    upstream_timeout: float = 60.0
    upstream_connect_timeout: float = 20.0
    stdio_max_processes: int = 64
    stdio_idle_seconds: float = 600.0
    # Re-discover every upstream a server uses this often (0: only on list_changed and `upstream sync`).
    upstream_sync_seconds: float = 600.0

    # Local tools: bytes of compact JSON.
    max_document_bytes: int = 1024 * 1024
    max_tool_input_bytes: int = 64 * 1024
    max_tool_result_bytes: int = 1024 * 1024

    # Legacy (2025-11-25) sessions.
    session_ttl_seconds: int = 3600

    # Accounts: anyone may sign up over the REST API unless this is off.
    registration_open: bool = True
    login_session_ttl_seconds: int = 12 * 3600

    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    # Audit trail: request/response bodies per call (redacted, gzip JSON), and how long records live.
    payload_max_bytes: int = Field(default=256 * 1024, ge=0, description="bigger bodies are stored as a stub")
    audit_retention_days: float | None = Field(default=None, gt=0, description="unset: keep records forever")

    # /metrics: with a token, scrapers send "Authorization: Bearer <token>" (from anywhere);
    # without one, only loopback clients may scrape.
    metrics_token: str | None = None

    # OpenTelemetry: spans are made and exported only when an OTLP/HTTP endpoint is set.
    otlp_endpoint: str | None = None

    @field_validator("database_url")
    @classmethod
    def _normalise_db_url(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else value

    @property
    def objects_dir(self) -> Path:
        return self.home / "objects"

    @property
    def sqlite_path(self) -> Path:
        return self.home / "patchbay.db"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.sqlite_path.resolve()}"

    @property
    def is_production(self) -> bool:
        return self.environment.lower() in {"production", "prod"}

    def resolve_secret_key(self) -> bytes:
        """Key material for hashing keys and encrypting secrets: the setting, or a generated file."""
        if self.secret_key is not None:
            if self.secret_key.strip().lower() in _PLACEHOLDERS or len(self.secret_key) < 16:
                raise ValueError("PATCHBAY_SECRET_KEY is a placeholder or shorter than 16 characters")
            return self.secret_key.encode()
        if self.is_production:
            raise ValueError("PATCHBAY_SECRET_KEY must be set in production")
        path = self.home / "secret.key"
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return path.read_text().strip().encode()


def normalise_database_url(url: str) -> str:
    """Pick the async driver for a plain SQLAlchemy URL (``postgresql://`` → asyncpg)."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite:///", "sqlite+aiosqlite:///"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url
