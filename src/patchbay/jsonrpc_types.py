"""Plain JSON aliases shared by every layer (JSON-RPC messages travel as dicts, never models)."""

from __future__ import annotations

from typing import Any

JSONObject = dict[str, Any]
