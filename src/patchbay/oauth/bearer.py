"""What routing needs from OAuth: per-user upstream specs whose connections ask for a bearer per request."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from patchbay.oauth.manager import TokenManager
from patchbay.oauth.tokens import Owner
from patchbay.routing.upstream.base import UpstreamSpec


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


@dataclass
class OAuthRoutes:
    """Per-user specs of one OAuth upstream in one org (each user gets their own pooled connection)."""

    manager: TokenManager
    base: UpstreamSpec
    template_id: str
    org_id: str
    _specs: dict[str, UpstreamSpec] = field(default_factory=dict)

    def owner(self, user_id: str) -> Owner:
        return Owner(template_id=self.template_id, org_id=self.org_id, user_id=user_id)

    def spec_for(self, user_id: str) -> UpstreamSpec:
        spec = self._specs.get(user_id)
        if spec is None:
            owner = self.owner(user_id)
            spec = replace(self.base, key=f"{self.base.key}:oauth:{owner.key}", auth=OwnerBearer(self.manager, owner))
            self._specs[user_id] = spec
        return spec

    async def connected(self, user_id: str) -> bool:
        return await self.manager.connected(self.owner(user_id))

    async def require(self, user_id: str) -> None:
        """Raise ConnectionRequired (with the link) unless the user has a usable connection."""
        if not await self.manager.connected(self.owner(user_id)):
            await self.manager.access_token(self.owner(user_id))
