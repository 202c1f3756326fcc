from __future__ import annotations

import json

import pytest

from patchbay.errors import InvalidInput
from patchbay.services.upstreams import parse_mcp_servers_file


def test_claude_desktop_file_parses() -> None:
    text = json.dumps(
        {
            "mcpServers": {
                "time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=UTC"]},
                "github": {"command": "npx", "args": ["-y", "gh"], "env": {"GITHUB_TOKEN": "t0k"}},
                "remote": {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer x"}},
                "legacy": {"type": "sse", "url": "https://old.example.com/sse"},
                "off": {"command": "nope", "disabled": True},
            }
        }
    )
    entries = {e.name: e for e in parse_mcp_servers_file(text)}
    assert set(entries) == {"time", "github", "remote", "legacy"}
    assert entries["time"].transport == "stdio"
    assert entries["time"].command == ("uvx", "mcp-server-time", "--local-timezone=UTC")
    assert entries["github"].env == {"GITHUB_TOKEN": "t0k"}
    assert entries["remote"].transport == "streamable_http"
    assert entries["remote"].headers == {"Authorization": "Bearer x"}
    assert entries["legacy"].transport == "sse"


def test_variables_expand_from_the_given_environment() -> None:
    text = json.dumps(
        {
            "mcpServers": {
                "gh": {"command": "npx", "args": ["${PKG:-gh-mcp}"], "env": {"TOKEN": "${GH_TOKEN}"}},
                "api": {"url": "https://${HOST}/mcp", "headers": {"X-Key": "${KEY}"}, "type": "http"},
            }
        }
    )
    entries = {e.name: e for e in parse_mcp_servers_file(text, environ={"GH_TOKEN": "abc", "HOST": "h.io", "KEY": "k"})}
    assert entries["gh"].command == ("npx", "gh-mcp")
    assert entries["gh"].env == {"TOKEN": "abc"}
    assert entries["api"].url == "https://h.io/mcp"
    assert entries["api"].headers == {"X-Key": "k"}
    literal = {e.name: e for e in parse_mcp_servers_file(text)}
    assert literal["gh"].env == {"TOKEN": "${GH_TOKEN}"}


def test_a_missing_variable_is_named_but_not_guessed() -> None:
    text = json.dumps({"mcpServers": {"gh": {"command": "x", "env": {"TOKEN": "${GH_TOKEN}"}}}})
    with pytest.raises(InvalidInput, match=r"mcpServers\.gh\.env\.TOKEN: environment variable GH_TOKEN is not set"):
        parse_mcp_servers_file(text, environ={})


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("{not json", r"not valid JSON: .* line 1 column 2"),
        ("[]", "expected a JSON object"),
        ("{}", 'no "mcpServers"'),
        ('{"mcpServers": []}', "must be an object"),
        ('{"mcpServers": {}}', "lists no servers"),
        ('{"mcpServers": {"a": "npx"}}', r"mcpServers\.a: expected an object"),
        ('{"mcpServers": {"a": {}}}', r'mcpServers\.a: needs "command"'),
        ('{"mcpServers": {"a": {"command": "x", "url": "https://a"}}}', "not both"),
        ('{"mcpServers": {"a": {"command": 3}}}', r"mcpServers\.a\.command: expected a non-empty string"),
        ('{"mcpServers": {"a": {"command": "x", "args": "y"}}}', r"mcpServers\.a\.args: expected a list"),
        (
            '{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}',
            r"mcpServers\.a\.env: expected an object",
        ),
        ('{"mcpServers": {"a": {"command": "x", "env": {"1K": "v"}}}}', "not a valid environment variable"),
        ('{"mcpServers": {"a": {"command": "x", "type": "sse"}}}', 'type "sse" does not take a command'),
        ('{"mcpServers": {"a": {"url": "ftp://x"}}}', "must be http"),
        ('{"mcpServers": {"a": {"url": "https://x", "type": "ws"}}}', 'unknown type "ws"'),
        ('{"mcpServers": {"a": {"url": "https://x", "headers": {"Host": "y"}}}}', "set by the transport"),
        ('{"mcpServers": {"a": {"command": "x", "headers": {"A": "b"}}}}', "only apply to URL"),
        ('{"mcpServers": {"": {"command": "x"}}}', "needs a name"),
    ],
)
def test_bad_files_are_refused_with_the_place_of_the_problem(document: str, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_mcp_servers_file(document)
