"""The authorize and rate-limit stages on their own: who may call what, and when a call must wait."""

from __future__ import annotations

import pytest

from patchbay.auth.principal import Principal, ToolGrant
from patchbay.auth.tool_keys import ToolKeyGrant
from patchbay.engine.runner import LocalTarget
from patchbay.errors import Forbidden, RateLimited
from patchbay.pipeline import Operator, authorize, rate_limit
from patchbay.routing.catalog import ToolRoute
from patchbay.state import MemoryStore

pytestmark = pytest.mark.anyio


def route(*, tool_id: str = "t1", read_only: bool, rate: int | None = None) -> ToolRoute:
    local = LocalTarget(tool_id=tool_id, document_id="d", path="", kind="get" if read_only else "update")
    return ToolRoute(
        exposed_name="tool",
        tool_id=tool_id,
        upstream=None,
        upstream_name="tool",
        definition={},
        read_only=read_only,
        local=local,
        rate_limit=rate,
    )


def tool_key(*scopes: str, tool_id: str = "t1", rate: int | None = None, key_id: str = "k1") -> ToolKeyGrant:
    return ToolKeyGrant(
        key_id=key_id, prefix="tk_abc", org_id="o", tool_id=tool_id, scopes=frozenset(scopes), rate_limit=rate
    )


def api_key(grants: dict[str, ToolGrant] | None) -> Principal:
    return Principal(
        key_id="k2",
        key_prefix="pb_abc",
        key_revision=1,
        org_id="o",
        server_id="s",
        server_revision=1,
        user_id="u",
        all_tools=grants is None,
        grants=grants or {},
    )


@pytest.mark.parametrize(
    ("scopes", "read_only", "allowed"),
    [
        (("execute",), False, True),
        (("admin",), False, True),
        (("read",), True, True),
        (("read",), False, False),
    ],
)
def test_tool_key_scopes_decide_what_it_may_call(scopes: tuple[str, ...], read_only: bool, allowed: bool) -> None:
    if allowed:
        authorize(tool_key(*scopes), route(read_only=read_only))
    else:
        with pytest.raises(Forbidden, match="may only call read-only tools"):
            authorize(tool_key(*scopes), route(read_only=read_only))


def test_a_tool_key_opens_only_its_own_tool() -> None:
    with pytest.raises(Forbidden, match="is for another tool"):
        authorize(tool_key("admin", tool_id="other"), route(read_only=True))


def test_api_key_grants_and_the_operator() -> None:
    authorize(api_key(None), route(read_only=False))
    authorize(api_key({"t1": ToolGrant(can_read=True, can_write=True)}), route(read_only=False))
    with pytest.raises(Forbidden, match="may only use read-only tools"):
        authorize(api_key({"t1": ToolGrant(can_read=True, can_write=False)}), route(read_only=False))
    with pytest.raises(Forbidden, match="may not use tool"):
        authorize(api_key({"t2": ToolGrant(can_read=True, can_write=True)}), route(read_only=True))
    authorize(Operator(org_id="o"), route(read_only=False))


async def test_the_tighter_of_key_and_tool_limits_refuses_first() -> None:
    store = MemoryStore()
    limited_tool = route(read_only=True, rate=2)
    for _ in range(2):
        await rate_limit(store, tool_key("execute", rate=5), limited_tool)
    with pytest.raises(RateLimited, match="tool 'tool' is over its rate limit of 2") as refused:
        await rate_limit(store, tool_key("execute", rate=5), limited_tool)
    assert 0 < refused.value.retry_after <= 30
    fresh_key = tool_key("execute", rate=5, key_id="k9")
    for _ in range(5):
        await rate_limit(store, fresh_key, route(tool_id="t2", read_only=True))
    with pytest.raises(RateLimited, match="key tk_abc is over its rate limit of 5"):
        await rate_limit(store, fresh_key, route(tool_id="t2", read_only=True))
    await rate_limit(store, Operator(org_id="o"), route(tool_id="t3", read_only=True))
    await store.aclose()
