"""``/api/v1/installation``: what ``patchbay secrets`` and ``patchbay logs prune`` do, for platform administrators.

These act on the whole installation, not one org: rotating the key that encrypts every stored
secret, and pruning the audit trail of every org.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from patchbay.policy.access import authorize_platform
from patchbay.services.audit_logs import prune_logs, retention_age
from patchbay.services.secrets import key_status, rotate
from patchbay.web.api.deps import CurrentCaller, Db, Gw
from patchbay.web.api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/installation", tags=["installation"], responses=ERROR_RESPONSES)


class SecretsOut(BaseModel):
    generation: int = Field(description="The key generation new values are sealed under.")
    kid: str = Field(description="Its key id.")
    values_by_kid: dict[str, int] = Field(description="Stored secret values per key id (never the values).")


class RotationOut(BaseModel):
    generation: int
    kid: str
    rewritten: int = Field(description="Values re-encrypted under the new key.")


class PruneOut(BaseModel):
    records: int
    payloads: int
    cutoff: datetime


@router.get("/secrets", summary="Which key seals the stored secrets (platform administrators)")
async def secrets_status(caller: CurrentCaller, session: Db, gw: Gw) -> SecretsOut:
    authorize_platform(platform_admin=caller.user.is_admin, what="see the encryption key status")
    found = await key_status(session, secret=gw.secret)
    return SecretsOut(generation=found.generation, kid=found.kid, values_by_kid=found.values_by_kid)


@router.post("/secrets/rotate", summary="Re-encrypt every stored secret under a new key (platform administrators)")
async def secrets_rotate(caller: CurrentCaller, session: Db, gw: Gw) -> RotationOut:
    authorize_platform(platform_admin=caller.user.is_admin, what="rotate the encryption key")
    done = await rotate(session, secret=gw.secret)
    return RotationOut(generation=done.generation, kid=done.kid, rewritten=done.rewritten)


@router.post("/logs/prune", summary="Delete audit records and payloads older than an age (platform administrators)")
async def logs_prune(
    caller: CurrentCaller,
    gw: Gw,
    older_than: Annotated[
        str | None, Query(max_length=20, description="An age like 30d (default: PATCHBAY_AUDIT_RETENTION_DAYS).")
    ] = None,
) -> PruneOut:
    authorize_platform(platform_admin=caller.user.is_admin, what="prune the audit trail")
    cutoff = datetime.now(UTC) - retention_age(older_than, default_days=gw.settings.audit_retention_days)
    result = await prune_logs(gw.sessionmaker, gw.objects, older_than=cutoff)
    return PruneOut(records=result.records, payloads=result.payloads, cutoff=cutoff)
