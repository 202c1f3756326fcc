"""``GET /metrics``: the gateway's state in Prometheus text format, read at scrape time."""

from __future__ import annotations

import hmac
import ipaddress
from collections import Counter

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from patchbay.audit.metrics import CONTENT_TYPE, Exposition, hit_rate_gauges, render_calls
from patchbay.runtime import Gateway


def render(gw: Gateway) -> str:
    """Every metric of this process as one exposition."""
    out = Exposition()
    render_calls(out, gw.metrics)

    out.gauge("patchbay_audit_queue_depth", "Audit records accepted and not yet written.", gw.audit.depth)
    out.counter("patchbay_audit_records_written_total", "Audit records written.", gw.audit.written)
    out.counter("patchbay_audit_failed_batches_total", "Audit write attempts that failed.", gw.audit.failed_batches)
    out.counter("patchbay_audit_rejected_total", "Audit records the database refused.", gw.audit.rejected)
    out.gauge("patchbay_payload_queue_depth", "Payloads waiting for the object store.", gw.payloads.depth)
    out.counter("patchbay_payloads_stored_total", "Payloads stored.", gw.payloads.stored)
    out.counter("patchbay_payloads_failed_total", "Payloads the object store did not take.", gw.payloads.failed)

    stats = gw.pool.stats()
    out.gauge("patchbay_stdio_processes", "Live stdio upstream processes.", int(str(stats["stdio_processes"])))
    out.family("patchbay_upstream_connections", "gauge", "Open upstream connections by transport.")
    connections = stats["connections"]
    if isinstance(connections, dict):
        for transport, count in sorted(connections.items()):
            out.sample("patchbay_upstream_connections", count, {"transport": transport})
    out.gauge(
        "patchbay_upstreams_restarting",
        "Upstreams waiting to reconnect after a failure.",
        int(str(stats["restarting"])),
    )
    http = gw.pool.http_stats()
    out.family("patchbay_upstream_http_pool", "gauge", "Upstream HTTP keep-alive pool: open and idle connections.")
    out.sample("patchbay_upstream_http_pool", http["connections"], {"state": "open"})
    out.sample("patchbay_upstream_http_pool", http["idle"], {"state": "idle"})

    up: dict[tuple[str, str], bool] = {}
    busy: Counter[tuple[str, str]] = Counter()
    for name, transport, alive, in_flight in gw.pool.health():
        up[(name, transport)] = up.get((name, transport), False) or alive
        busy[(name, transport)] += in_flight
    out.family("patchbay_upstream_up", "gauge", "1 when a connection to the upstream is open.")
    for (name, transport), alive in sorted(up.items()):
        out.sample("patchbay_upstream_up", 1 if alive else 0, {"upstream": name, "transport": transport})
    out.family("patchbay_upstream_in_flight", "gauge", "Calls waiting on the upstream.")
    for (name, transport), count in sorted(busy.items()):
        out.sample("patchbay_upstream_in_flight", count, {"upstream": name, "transport": transport})

    tool_hits = gw.tool_list_lookups - gw.tool_list_misses
    hit_rate_gauges(
        out,
        [
            ("api_keys", lambda: (gw.resolver.hits, gw.resolver.misses)),
            ("catalogs", lambda: (gw.catalogs.hits, gw.catalogs.misses)),
            ("tool_lists", lambda: (tool_hits, gw.tool_list_misses)),
        ],
    )
    return out.text()


def scrape_allowed(request: Request, token: str | None) -> bool:
    """With ``PATCHBAY_METRICS_TOKEN`` set: the bearer token must match (compared in constant time).
    Without it: only a loopback client (a scraper on the same host, or a trusted proxy's forwarded
    address when ``PATCHBAY_TRUST_PROXY_HEADERS`` is on)."""
    if token:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())
    host = request.client.host if request.client is not None else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def metrics_endpoint(request: Request) -> Response:
    """The Starlette route for ``/metrics``: the gateway's state for allowed scrapers, else 403."""
    gw: Gateway = request.app.state.gateway
    if not scrape_allowed(request, gw.settings.metrics_token):
        return PlainTextResponse(
            "metrics are for loopback clients or a bearer PATCHBAY_METRICS_TOKEN\n",
            status_code=403,
            headers={"www-authenticate": "Bearer"} if gw.settings.metrics_token else None,
        )
    return Response(render(gw), media_type=CONTENT_TYPE)
