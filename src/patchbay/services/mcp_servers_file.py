"""Reading ``mcpServers`` files (Claude Desktop config, ``.mcp.json``) into upstream inputs.

``${VAR}`` and ``${VAR:-default}`` in commands, arguments, env values, URLs and header
values are expanded from ``environ`` when one is given, as Claude Code does, so a file
can be shared without the secrets in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from patchbay.errors import InvalidInput
from patchbay.services.upstream_input import UpstreamInput, check_upstream

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_URL_TYPES = {"sse": "sse", "http": "streamable_http", "streamable-http": "streamable_http"}
_URL_TYPES |= {"streamable_http": "streamable_http", "streamablehttp": "streamable_http"}


def parse_mcp_servers_file(text: str, *, environ: Mapping[str, str] | None = None) -> list[UpstreamInput]:
    """Every enabled server of the file, validated; InvalidInput names the first bad entry."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(document, dict):
        raise InvalidInput('expected a JSON object with an "mcpServers" object')
    servers = document.get("mcpServers")
    if servers is None:
        raise InvalidInput('no "mcpServers" object in the file')
    if not isinstance(servers, dict):
        raise InvalidInput('"mcpServers" must be an object of name -> server')
    out = [
        _entry(name, raw, environ)
        for name, raw in servers.items()
        if not (isinstance(raw, dict) and raw.get("disabled") is True)
    ]
    if not out:
        raise InvalidInput('"mcpServers" lists no servers')
    return out


def _entry(name: str, raw: Any, environ: Mapping[str, str] | None) -> UpstreamInput:
    where = f"mcpServers.{name}" if name else "mcpServers (an entry with an empty name)"
    if not name.strip():
        raise InvalidInput(f"{where}: the server needs a name")
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where}: expected an object")

    def expand(value: str, what: str) -> str:
        return value if environ is None else _expand(value, environ, where=f"{where}.{what}")

    command, url = raw.get("command"), raw.get("url")
    if command is not None and url is not None:
        raise InvalidInput(f'{where}: give either "command" or "url", not both')
    declared = raw.get("type")
    if declared is not None and not isinstance(declared, str):
        raise InvalidInput(f"{where}.type: expected a string")
    env = {k: expand(v, f"env.{k}") for k, v in _string_map(raw.get("env"), f"{where}.env").items()}
    if command is not None:
        if not isinstance(command, str) or not command.strip():
            raise InvalidInput(f"{where}.command: expected a non-empty string")
        if declared not in (None, "stdio"):
            raise InvalidInput(f'{where}: type "{declared}" does not take a command')
        args = _string_list(raw.get("args"), f"{where}.args")
        argv = [expand(command, "command"), *(expand(a, "args") for a in args)]
        if "headers" in raw:
            raise InvalidInput(f"{where}.headers: HTTP headers only apply to URL servers")
        return check_upstream(name=name, transport="stdio", command=argv, url=None, env=env, headers={})
    if url is not None:
        if not isinstance(url, str) or not url.strip():
            raise InvalidInput(f"{where}.url: expected a non-empty string")
        transport = _URL_TYPES.get((declared or "http").lower())
        if transport is None:
            raise InvalidInput(f'{where}.type: unknown type "{declared}"; use "http" or "sse"')
        headers = {k: expand(v, f"headers.{k}") for k, v in _string_map(raw.get("headers"), f"{where}.headers").items()}
        return check_upstream(
            name=name, transport=transport, command=None, url=expand(url, "url"), env=env, headers=headers
        )
    raise InvalidInput(f'{where}: needs "command" (a local server) or "url" (a remote server)')


def _string_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{where}: expected a list of strings")
    return value


def _string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidInput(f"{where}: expected an object of string values")
    return value


def _expand(value: str, environ: Mapping[str, str], *, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        raise InvalidInput(f"{where}: environment variable {name} is not set")

    return _VARIABLE.sub(replace, value)
