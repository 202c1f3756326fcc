"""Era negotiation rules, driven by scripted upstream answers (a fake call, no transport)."""

from __future__ import annotations

import pytest

from patchbay.errors import UpstreamError
from patchbay.jsonrpc_types import JSONObject
from patchbay.routing.upstream.base import Era
from patchbay.routing.upstream.protocol import CAPABILITIES_KEY, VERSION_KEY, negotiate, strip_envelope

pytestmark = pytest.mark.anyio

DISCOVERED: JSONObject = {
    "result": {
        "supportedVersions": ["2026-07-28"],
        "capabilities": {"tools": {}},
        "instructions": "use me",
        "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "modern", "version": "2"}},
    }
}
INITIALIZED: JSONObject = {
    "result": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "serverInfo": {"name": "legacy", "version": "1"},
    }
}


def error(code: int, data: object = None) -> JSONObject:
    return {"error": {"code": code, "message": "no", "data": data}}


class Script:
    """Answers each request with the next scripted response for its method; records what was sent."""

    def __init__(self, **answers: list[JSONObject]) -> None:
        self.answers = {method.replace("_", "/"): list(replies) for method, replies in answers.items()}
        self.sent: list[tuple[str, JSONObject]] = []

    async def __call__(self, method: str, params: JSONObject) -> JSONObject:
        self.sent.append((method, params))
        return self.answers[method].pop(0)

    @property
    def methods(self) -> list[str]:
        return [method for method, _ in self.sent]


async def run(script: Script, era: Era = "auto") -> tuple[str, bool, str]:
    settled = await negotiate("up", era, script)
    return settled.protocol_version, settled.modern, settled.server_info.get("name", "")


async def test_a_modern_server_is_adopted_from_its_discover_result() -> None:
    script = Script(server_discover=[DISCOVERED])
    assert await run(script) == ("2026-07-28", True, "modern")
    meta = script.sent[0][1]["_meta"]
    assert meta[VERSION_KEY] == "2026-07-28"
    assert set(meta[CAPABILITIES_KEY]) == {"sampling", "elicitation", "roots"}


async def test_method_not_found_falls_back_to_initialize() -> None:
    script = Script(server_discover=[error(-32601)], initialize=[INITIALIZED])
    assert await run(script) == ("2025-11-25", False, "legacy")
    assert script.sent[1][1]["protocolVersion"] == "2025-11-25"


async def test_a_discover_result_naming_only_old_versions_falls_back() -> None:
    old = {"result": {**DISCOVERED["result"], "supportedVersions": ["2025-11-25"]}}
    script = Script(server_discover=[old], initialize=[INITIALIZED])
    assert await run(script) == ("2025-11-25", False, "legacy")


async def test_unsupported_version_with_a_mutual_one_probes_again() -> None:
    script = Script(server_discover=[error(-32022, {"supported": ["2026-07-28"]}), DISCOVERED])
    assert await run(script) == ("2026-07-28", True, "modern")
    assert script.methods == ["server/discover", "server/discover"]


async def test_a_modern_only_server_with_no_common_version_is_an_error() -> None:
    script = Script(server_discover=[error(-32022, {"supported": ["2099-01-01"]})])
    with pytest.raises(UpstreamError, match="speaks only protocol versions 2099-01-01"):
        await run(script)


async def test_initialize_refused_as_modern_leads_to_a_second_probe() -> None:
    # The probe timed out on our side but locked the server modern; initialize then says so.
    script = Script(
        server_discover=[error(-32001), DISCOVERED],
        initialize=[error(-32022, {"supported": ["2026-07-28"]})],
    )
    assert await run(script) == ("2026-07-28", True, "modern")
    assert script.methods == ["server/discover", "initialize", "server/discover"]


async def test_forced_legacy_never_probes() -> None:
    script = Script(initialize=[INITIALIZED])
    assert await run(script, "legacy") == ("2025-11-25", False, "legacy")
    assert script.methods == ["initialize"]


async def test_an_unknown_handshake_version_is_an_error() -> None:
    script = Script(server_discover=[error(-32601)], initialize=[{"result": {"protocolVersion": "1999-01-01"}}])
    with pytest.raises(UpstreamError, match="unsupported protocol version '1999-01-01'"):
        await run(script)


# --- what a legacy upstream is sent ----------------------------------------------------------


def test_a_legacy_upstream_gets_the_callers_meta_without_the_envelope() -> None:
    params: JSONObject = {
        "name": "echo",
        "_meta": {VERSION_KEY: "2026-07-28", CAPABILITIES_KEY: {}, "progressToken": 7},
    }
    assert strip_envelope(params) == {"name": "echo", "_meta": {"progressToken": 7}}
    assert params["_meta"] == {VERSION_KEY: "2026-07-28", CAPABILITIES_KEY: {}, "progressToken": 7}  # untouched


def test_a_meta_holding_only_the_envelope_is_dropped_not_sent_empty() -> None:
    params: JSONObject = {"name": "echo", "arguments": {"text": "hi"}, "_meta": {CAPABILITIES_KEY: {"roots": {}}}}
    assert strip_envelope(params) == {"name": "echo", "arguments": {"text": "hi"}}


def test_params_without_envelope_keys_are_passed_as_they_are() -> None:
    params: JSONObject = {"name": "echo", "_meta": {"progressToken": "p"}}
    assert strip_envelope(params) is params
    assert strip_envelope(None) is None
