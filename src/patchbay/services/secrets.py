"""Rotation of the config-encryption key: a new generation, then every ciphertext re-encrypted under it.

Gateways decrypt any generation (the key id in each ciphertext names it), so values stay
readable while the rotation runs and after it: no downtime, no restart. A value written
by a process that read the generation just before the rotation committed lands under
the old key; ``secrets status`` shows it and running ``rotate`` again moves it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import Conflict
from patchbay.oauth.contexts import client_context, token_context
from patchbay.security.crypto import MAX_GENERATIONS, Keyring
from patchbay.services.upstreams import config_context, shared_context
from patchbay.store.models import EncryptionKey, OAuthClient, OAuthToken, SharedCredential, TemplateConfig


@dataclass(frozen=True, slots=True)
class Rotation:
    generation: int
    kid: str
    rewritten: int


@dataclass(frozen=True, slots=True)
class KeyStatus:
    generation: int
    kid: str
    values_by_kid: dict[str, int]


async def key_status(session: AsyncSession, *, secret: bytes) -> KeyStatus:
    """The current key generation and id, and how many stored values each key id seals."""
    generation = await current_generation(session)
    kid = Keyring(secret, generation=generation).current_kid
    return KeyStatus(generation, kid, await ciphertexts_by_kid(session))


async def current_generation(session: AsyncSession) -> int:
    """The key generation new ciphertexts are written under (0 before any rotation)."""
    return int(await session.scalar(select(func.max(EncryptionKey.generation))) or 0)


async def ciphertexts_by_kid(session: AsyncSession) -> dict[str, int]:
    """How many stored values each key id seals (to see whether a rotation is complete)."""
    tokens = [
        *(await session.scalars(select(TemplateConfig.ciphertext))).all(),
        *(await session.scalars(select(SharedCredential.ciphertext))).all(),
        *(await session.scalars(select(OAuthToken.ciphertext))).all(),
        *(
            await session.scalars(
                select(OAuthClient.secret_ciphertext).where(OAuthClient.secret_ciphertext.is_not(None))
            )
        ).all(),
    ]
    return dict(Counter(str(token).partition(":")[0] for token in tokens))


async def rotate(session: AsyncSession, *, secret: bytes) -> Rotation:
    """Start the next key generation and re-encrypt every stored value under it."""
    generation = await current_generation(session) + 1
    if generation >= MAX_GENERATIONS:
        raise Conflict(f"all {MAX_GENERATIONS} key generations are used; change PATCHBAY_SECRET_KEY instead")
    ring = Keyring(secret, generation=generation)
    session.add(EncryptionKey(generation=generation, kid=ring.current_kid))
    await session.flush()
    # Every sealed value: its row, the attribute holding the ciphertext, and the context it is bound to.
    sealed: list[tuple[Any, str, str]] = []
    for config in (await session.scalars(select(TemplateConfig))).all():
        sealed.append((config, "ciphertext", config_context(config.template_id, config.org_id, config.user_id)))
    for shared in (await session.scalars(select(SharedCredential))).all():
        sealed.append((shared, "ciphertext", shared_context(shared.template_id, shared.org_id, shared.name)))
    for token in (await session.scalars(select(OAuthToken))).all():
        context = token_context(token.id, token.template_id, token.org_id, token.user_id, token.shared_name)
        sealed.append((token, "ciphertext", context))
    for client in (await session.scalars(select(OAuthClient))).all():
        sealed.append((client, "secret_ciphertext", client_context(client.template_id)))
    rewritten = 0
    for row, attr, context in sealed:
        old = getattr(row, attr)
        if old and ring.needs_reencryption(old):
            setattr(row, attr, ring.encrypt_json(ring.decrypt_json(old, context=context), context=context))
            rewritten += 1
    # Catalogs cache decrypted values, which do not change: no server needs a reload.
    await session.flush()
    return Rotation(generation=generation, kid=ring.current_kid, rewritten=rewritten)
