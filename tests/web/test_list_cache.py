"""tools/list is cached per server revision and per permission set, never across different permissions."""

from __future__ import annotations

from patchbay.auth.principal import Principal, ToolGrant
from patchbay.routing.catalog import Catalog, ToolRoute, Upstream
from patchbay.routing.upstream.base import UpstreamSpec
from patchbay.runtime import build_gateway
from patchbay.settings import Settings

UP = Upstream(
    template_id="t",
    slug="up",
    spec=UpstreamSpec(key="t", name="up", transport="stdio"),
    capabilities={},
    protocol_version=None,
)


def _catalog(revision: int, names: list[str]) -> Catalog:
    tools = {
        n: ToolRoute(
            exposed_name=n, tool_id=f"id-{n}", upstream=UP, upstream_name=n, definition={"name": n}, read_only=n == "r"
        )
        for n in names
    }
    return Catalog(
        server_id="s", org_id="o", revision=revision, plain_names=False, upstreams=[UP], tools=tools,
        capabilities={"tools": {}}, instructions=None,
    )  # fmt: skip


def _key(key_id: str, grants: dict[str, ToolGrant] | None) -> Principal:
    return Principal(
        key_id=key_id, key_prefix=key_id, key_revision=1, org_id="o", server_id="s", server_revision=1,
        user_id="u", all_tools=grants is None, grants=grants or {},
    )  # fmt: skip


def test_keys_with_the_same_permissions_share_a_list_and_different_ones_never_do(settings: Settings) -> None:
    gw = build_gateway(settings)
    catalog = _catalog(1, ["r", "w"])
    reader = {"id-r": ToolGrant(can_read=True, can_write=False)}
    first, second = _key("k1", reader), _key("k2", dict(reader))
    writer = _key("k3", {"id-r": ToolGrant(True, True), "id-w": ToolGrant(True, True)})

    assert gw.visible_tools(first, catalog) == [{"name": "r"}]
    assert gw.visible_tools(second, catalog) is gw.visible_tools(first, catalog)
    assert gw.visible_tools(writer, catalog) == [{"name": "r"}, {"name": "w"}]
    assert gw.visible_tools(_key("k4", None), catalog) == [{"name": "r"}, {"name": "w"}]
    assert gw.visible_tools(first, catalog) == [{"name": "r"}], "a wider key's list is not served to a narrower one"


def test_a_new_server_revision_is_a_new_list(settings: Settings) -> None:
    gw = build_gateway(settings)
    everyone = _key("k", None)
    assert gw.visible_tools(everyone, _catalog(1, ["a", "b"])) == [{"name": "a"}, {"name": "b"}]
    assert gw.visible_tools(everyone, _catalog(2, ["a"])) == [{"name": "a"}]
