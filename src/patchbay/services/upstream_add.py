"""Adding upstreams from checked input: one, or every entry of an mcpServers document.

Shared by ``patchbay upstream add/import`` and ``POST …/upstreams`` / ``…/upstreams/import``.
The caller says how to check an entry (name free, allowed for this caller) and how to store it
in its own transaction; this module talks to the upstreams (concurrently for an import) in
between, so nothing is stored for an upstream that cannot be reached and asked for its tools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from patchbay.errors import InvalidInput, PatchbayError
from patchbay.routing.upstream.http_common import HttpStatusError
from patchbay.services.upstream_input import UpstreamInput
from patchbay.services.upstreams import DiscoveredUpstream, add_upstream
from patchbay.store.models import ServerTemplate

Check = Callable[[UpstreamInput], Awaitable[str]]  # the slug the entry would get, or a PatchbayError
Store = Callable[[UpstreamInput, DiscoveredUpstream], Awaitable[ServerTemplate]]
# Stores an entry as an OAuth upstream (discovery of its authorization server, a client there).
StoreOAuth = Callable[[UpstreamInput], Awaitable[ServerTemplate]]


@dataclass
class Outcome:
    """One entry of an import: stored (``template`` and what discovery found) or refused (``error``)."""

    entry: UpstreamInput
    template: ServerTemplate | None = None
    found: DiscoveredUpstream | None = None
    error: str | None = None


async def discover_entry(entry: UpstreamInput, *, seconds: float) -> DiscoveredUpstream:
    """Connect to the upstream ``entry`` describes and list its tools."""
    from patchbay.routing.discovery import discover

    return await discover(entry.spec(), timeout=seconds)


async def store_entry(
    session: AsyncSession,
    *,
    org_id: str | None,
    entry: UpstreamInput,
    found: DiscoveredUpstream,
    secret: bytes,
    required: Sequence[str] = (),
) -> ServerTemplate:
    """Store a checked entry that discovery has just reached."""
    return await add_upstream(
        session,
        org_id=org_id,
        name=entry.name,
        transport=entry.transport,
        command=entry.command,
        url=entry.url,
        env=entry.env,
        headers=entry.headers,
        discovery=found,
        secret=secret,
        required=required,
    )


async def add_entry(
    entry: UpstreamInput,
    *,
    check: Check,
    store: Store,
    seconds: float,
    store_oauth: StoreOAuth | None = None,
    oauth: bool = False,
) -> Outcome:
    """Check, discover and store one entry; errors propagate.

    With ``store_oauth``, an HTTP upstream given no credentials that answers 401 (or any
    entry when ``oauth`` is asked for) is stored as an OAuth upstream: its tools are listed
    with the first user's connection, so the outcome has none yet.
    """
    await check(entry)
    if not oauth:
        try:
            found = await discover_entry(entry, seconds=seconds)
            return Outcome(entry, template=await store(entry, found), found=found)
        except HttpStatusError as exc:
            if store_oauth is None or not _asks_for_oauth(entry, exc):
                raise
    if store_oauth is None:
        raise InvalidInput("this caller cannot add OAuth upstreams")
    if entry.url is None:
        raise InvalidInput("an OAuth upstream needs a url")
    return Outcome(entry, template=await store_oauth(entry))


def _asks_for_oauth(entry: UpstreamInput, exc: HttpStatusError) -> bool:
    """A 401 from an HTTP upstream given no credentials of its own: it wants users to sign in."""
    return exc.status == 401 and entry.transport != "stdio" and not entry.env and not entry.headers


async def import_entries(
    entries: Sequence[UpstreamInput], *, check: Check, store: Store, seconds: float
) -> list[Outcome]:
    """Every entry checked, the good ones discovered together, then each stored; one bad entry
    is reported in its outcome and leaves the others alone."""
    outcomes = [Outcome(entry) for entry in entries]
    seen: set[str] = set()
    for outcome in outcomes:
        try:
            slug = await check(outcome.entry)
        except PatchbayError as exc:
            outcome.error = str(exc)
            continue
        if slug in seen:
            outcome.error = f"upstream {slug!r} appears twice in the document"
        seen.add(slug)
    pending = [o for o in outcomes if o.error is None]
    found = await asyncio.gather(*(discover_entry(o.entry, seconds=seconds) for o in pending), return_exceptions=True)
    for outcome, result in zip(pending, found, strict=True):
        if isinstance(result, PatchbayError):
            outcome.error = str(result)
            continue
        if isinstance(result, BaseException):
            raise result
        try:
            outcome.template = await store(outcome.entry, result)
        except PatchbayError as exc:
            outcome.error = str(exc)
            continue
        outcome.found = result
    return outcomes
