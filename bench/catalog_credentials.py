"""Catalog rebuild and per-call credential choice with many users who set their own upstream values.

Before per-key credentials, every catalog rebuild decrypted every user's own values of every
upstream of the server (``user_specs``). Now the rebuild keeps them sealed and a call opens the
one it needs once. This prints, side by side in one run (alternating rounds):

- ``lazy``: ``build_catalog`` as it is now;
- ``eager``: ``build_catalog`` plus opening every user's values, which is what a rebuild cost before;
- per call: ``Upstream.resolve`` for a user already opened, beside the old ``dict.get(user_id, spec)``.

    .venv/bin/python bench/catalog_credentials.py [--users 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from patchbay.auth.principal import Principal
from patchbay.routing.catalog import build_catalog
from patchbay.security.crypto import Keyring, encrypt_json, fingerprint_key
from patchbay.services.upstreams import config_context
from patchbay.store import migrate
from patchbay.store.db import make_engine, make_sessionmaker
from patchbay.store.models import (
    Membership,
    Organization,
    Server,
    ServerTemplate,
    ServerTemplateLink,
    TemplateConfig,
    User,
    new_id,
)

SECRET = b"bench-secret-" * 3


async def seed(sessionmaker: async_sessionmaker[AsyncSession], users: int) -> tuple[str, list[str]]:
    async with sessionmaker() as session:
        org = Organization(id=new_id(), name="Bench", slug="bench")
        template = ServerTemplate(
            id=new_id(), org_id=org.id, name="up", slug="up", transport="stdio", command=["fake"], tags=[]
        )
        server = Server(id=new_id(), org_id=org.id, name="main", slug="main")
        session.add_all([org, template, server])
        await session.flush()
        session.add(ServerTemplateLink(server_id=server.id, template_id=template.id))
        session.add(
            TemplateConfig(
                template_id=template.id,
                org_id=org.id,
                ciphertext=encrypt_json(
                    {"env": {"TOKEN": "org"}}, SECRET, context=config_context(template.id, org.id, None)
                ),
            )
        )
        ids = [new_id() for _ in range(users)]
        session.add_all(User(id=user_id, email=f"u{n}@example.com") for n, user_id in enumerate(ids))
        await session.flush()
        for n, user_id in enumerate(ids):
            session.add(Membership(org_id=org.id, user_id=user_id, role="member"))
            context = config_context(template.id, org.id, user_id)
            token = encrypt_json({"env": {"TOKEN": f"user-{n}"}}, SECRET, context=context)
            session.add(TemplateConfig(template_id=template.id, org_id=org.id, user_id=user_id, ciphertext=token))
        await session.commit()
        return server.id, ids


def principal(user_id: str) -> Principal:
    return Principal(
        key_id="k",
        key_prefix="pb_x",
        key_revision=1,
        org_id="o",
        server_id="s",
        server_revision=1,
        user_id=user_id,
        all_tools=True,
        grants={},
    )


async def main(users: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}"
        await asyncio.to_thread(migrate.upgrade, url)
        engine = make_engine(url)
        sessionmaker = make_sessionmaker(engine)
        server_id, user_ids = await seed(sessionmaker, users)
        keyring, fp_key = Keyring(SECRET), fingerprint_key(SECRET)
        keys = [principal(u) for u in user_ids]

        async def build(open_all: bool) -> float:
            start = time.perf_counter()
            async with sessionmaker() as session:
                catalog = await build_catalog(
                    session, server_id=server_id, secret=SECRET, keyring=keyring, fp_key=fp_key
                )
            if open_all:
                upstream = catalog.upstreams[0]
                for key in keys:
                    upstream.resolve(key, key.user_id)
            return time.perf_counter() - start

        lazy: list[float] = []
        eager: list[float] = []
        for _ in range(rounds):
            lazy.append(await build(False))
            eager.append(await build(True))

        async with sessionmaker() as session:
            catalog = await build_catalog(session, server_id=server_id, secret=SECRET, keyring=keyring, fp_key=fp_key)
        upstream = catalog.upstreams[0]
        key = keys[len(keys) // 2]
        upstream.resolve(key, key.user_id)
        old_shape = {u: upstream.spec for u in user_ids}
        calls = 200_000
        start = time.perf_counter()
        for _ in range(calls):
            upstream.resolve(key, key.user_id)
        per_resolve = (time.perf_counter() - start) / calls
        start = time.perf_counter()
        for _ in range(calls):
            old_shape.get(key.user_id, upstream.spec)
        per_get = (time.perf_counter() - start) / calls
        await engine.dispose()

    lazy_ms, eager_ms = statistics.median(lazy) * 1000, statistics.median(eager) * 1000
    print(f"users with own values: {users}, rounds: {rounds}")
    print(f"catalog rebuild, values sealed (now):          {lazy_ms:8.1f} ms")
    print(f"catalog rebuild, every user's values opened:   {eager_ms:8.1f} ms   ({eager_ms / lazy_ms:.1f}x)")
    print(f"per call: Upstream.resolve {per_resolve * 1e9:6.0f} ns   old dict.get {per_get * 1e9:6.0f} ns")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.users, args.rounds))
