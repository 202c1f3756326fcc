"""DNS-rebinding protection: only expected Host and Origin values reach the MCP endpoint."""

from __future__ import annotations

from urllib.parse import urlsplit

from patchbay.settings import Settings

_LOOPBACK = {"127.0.0.1", "localhost", "[::1]", "::1"}


class HostPolicy:
    def __init__(self, settings: Settings) -> None:
        hosts = {h.lower() for h in settings.allowed_hosts}
        if settings.public_url:
            hosts.add((urlsplit(settings.public_url).hostname or "").lower())
        self._open = not hosts and settings.host not in _LOOPBACK
        self._hosts = hosts | _LOOPBACK
        self._origins = {o.rstrip("/").lower() for o in settings.allowed_origins}

    def check(self, host: str | None, origin: str | None) -> str | None:
        """None when allowed, else the reason."""
        name = _hostname(host or "")
        if not self._open and name not in self._hosts:
            return f"Host '{host}' is not allowed"
        if origin is None:
            return None
        if origin.rstrip("/").lower() in self._origins:
            return None
        origin_host = _hostname(urlsplit(origin).netloc)
        if origin_host and (origin_host == name or (not self._open and origin_host in self._hosts)):
            return None
        return f"Origin '{origin}' is not allowed"


def _hostname(netloc: str) -> str:
    netloc = netloc.lower()
    if netloc.startswith("["):
        return netloc.split("]")[0] + "]"
    return netloc.rsplit(":", 1)[0] if ":" in netloc else netloc
