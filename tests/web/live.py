"""Connected SDK clients of both eras, and ways to change a running gateway as an admin would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import anyio
import mcp_types as types
from mcp import Client
from mcp.client.subscriptions import SubscriptionLost
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.runtime import Gateway
from patchbay.services.orgs import add_member, ensure_default_org
from patchbay.services.servers import get_server
from patchbay.services.tokens import create_token
from patchbay.services.users import create_user
from patchbay.settings import Settings
from tests.cli.conftest import cli_env

MODES = ["legacy", "2026-07-28"]
TOOLS_CHANGED = "notifications/tools/list_changed"
PROMPTS_CHANGED = "notifications/prompts/list_changed"
RESOURCES_CHANGED = "notifications/resources/list_changed"


class Inbox:
    """Change notifications a client received, with a way to wait for the next one."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._arrived = anyio.Event()
        self.lost: BaseException | None = None  # why a 2026-07-28 subscription ended, once it has

    def put(self, method: str) -> None:
        self.seen.append(method)
        self._arrived.set()

    def end(self, why: BaseException) -> None:
        self.lost = why
        self._arrived.set()

    async def until_lost(self) -> BaseException:
        """Wait until the subscription has ended; why it did."""
        while self.lost is None:
            self._arrived = anyio.Event()
            await self._arrived.wait()
        return self.lost

    async def expect(self, method: str, *, within: float = 5.0) -> None:
        with anyio.fail_after(within):
            while method not in self.seen:
                self._arrived = anyio.Event()
                await self._arrived.wait()
        self.seen.remove(method)


_EVENTS = {
    types.ToolListChangedNotification: TOOLS_CHANGED,
    types.PromptListChangedNotification: PROMPTS_CHANGED,
    types.ResourceListChangedNotification: RESOURCES_CHANGED,
}


@asynccontextmanager
async def connected(url: str, key: str, mode: str, gw: Gateway) -> AsyncIterator[tuple[Client, Inbox]]:
    """An SDK client of ``mode`` holding its change stream open (GET stream or subscriptions/listen)."""
    inbox = Inbox()
    before = gw.live.listening

    async def on_message(message: object) -> None:
        for kind, method in _EVENTS.items():
            if isinstance(message, kind):
                inbox.put(method)

    async with Client(f"{url}/mcp/k/{key}", mode=mode, message_handler=on_message) as client:
        if mode == "legacy":
            with anyio.fail_after(10):
                await gw.live.until_listening(before + 1)
            yield client, inbox
            return
        async with (
            client.listen(tools_list_changed=True, prompts_list_changed=True, resources_list_changed=True) as sub,
            anyio.create_task_group() as tg,
        ):
            assert sub.honored.tools_list_changed

            async def drain() -> None:
                try:
                    async for event in sub:
                        inbox.put({"ToolsListChanged": TOOLS_CHANGED}.get(type(event).__name__, type(event).__name__))
                except SubscriptionLost as exc:
                    inbox.end(exc)

            tg.start_soon(drain)
            yield client, inbox
            tg.cancel_scope.cancel()


Change = Callable[[AsyncSession], Awaitable[Any]]


async def change(sessionmaker: async_sessionmaker[AsyncSession], work: Change) -> None:
    """Make a change the way the CLI does: its own transaction on its own connection."""
    async with sessionmaker() as session:
        await work(session)
        await session.commit()


async def main_server(session: AsyncSession, name: str = "main") -> Any:
    org = await ensure_default_org(session)
    return await get_server(session, org_id=org.id, name_or_slug=name)


async def patchbay(settings: Settings, *args: str) -> str:
    """Run ``patchbay ARGS`` (the real CLI, in a worker thread with its own event loop); its output."""
    result = await anyio.to_thread.run_sync(
        partial(CliRunner().invoke, app, list(args), env=cli_env(settings), catch_exceptions=False)
    )
    assert result.exit_code == 0, result.output
    return result.stdout


async def admin_token(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> dict[str, str]:
    """Headers of a new admin of the default org, for REST changes."""
    async with sessionmaker() as session:
        org = await ensure_default_org(session)
        user = await create_user(session, email="root@example.com", password=None, admin=False, join_default=False)
        await add_member(session, org=org, user_id=user.id, role="admin")
        _row, secret = await create_token(
            session, user=user, name="tests", expires_in=None, secret=settings.resolve_secret_key()
        )
        await session.commit()
    return {"authorization": f"Bearer {secret}"}
