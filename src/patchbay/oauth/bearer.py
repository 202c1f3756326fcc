"""What routing needs from OAuth: the bearer a pooled connection asks for on every request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from patchbay.oauth.owner import Owner

if TYPE_CHECKING:  # the manager imports the token store, which routing must not load first
    from patchbay.oauth.manager import TokenManager


@dataclass(frozen=True, slots=True)
class OwnerBearer:
    """The ``CallAuth`` of one owner's pooled connection: the owner's current access token."""

    manager: TokenManager
    owner: Owner

    async def authorization(self) -> str:
        return f"Bearer {await self.manager.access_token(self.owner)}"

    async def rejected(self, value: str) -> None:
        # The upstream refused this token (HTTP 401): refresh once, unless someone already did.
        await self.manager.refresh(self.owner, stale=value.removeprefix("Bearer "))

    async def connected(self) -> bool:
        return await self.manager.connected(self.owner)

    async def require(self) -> None:
        """Raise ConnectionRequired (with the link) unless the owner has a usable connection."""
        if not await self.manager.connected(self.owner):
            await self.manager.access_token(self.owner)
