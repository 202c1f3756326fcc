"""``Mcp-Param-*`` headers a modern HTTP upstream asks for through ``x-mcp-header`` in its tool schemas."""

from __future__ import annotations

from typing import Any

from patchbay.jsonrpc_types import JSONObject
from patchbay.mcp import param_headers

HEADER_MISMATCH = -32020


def is_header_mismatch(response: JSONObject) -> bool:
    """Whether the upstream refused a request because its headers disagree with its body."""
    error = response.get("error")
    return isinstance(error, dict) and error.get("code") == HEADER_MISMATCH


class ToolHeaders:
    """Which of an upstream's tools mirror arguments into headers, learnt from its tools/list answers."""

    def __init__(self) -> None:
        self._marks: dict[str, tuple[param_headers.Annotation, ...]] = {}
        # Set once a full listing was fetched because a call was refused for missing headers.
        self.loaded = False

    def learn(self, response: JSONObject) -> None:
        """Take note of the tools in one tools/list response (a page: others are kept)."""
        result = response.get("result")
        tools = result.get("tools") if isinstance(result, dict) else None
        for tool in tools if isinstance(tools, list) else ():
            if isinstance(tool, dict) and isinstance(name := tool.get("name"), str):
                marks = param_headers.header_marks(tool.get("inputSchema"))
                if marks:
                    self._marks[name] = marks
                else:
                    self._marks.pop(name, None)

    def add_to(self, headers: dict[str, str], params: JSONObject) -> None:
        """Add the Mcp-Param headers a tools/call with ``params`` needs (usually none: a dict miss)."""
        if self._marks:
            name: Any = params.get("name")
            marks = self._marks.get(name) if isinstance(name, str) else None
            if marks:
                headers.update(param_headers.outgoing(marks, params.get("arguments")))
