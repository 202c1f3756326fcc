"""Prometheus metrics, counted off the request path.

Calls are counted from the audit events as the audit writer's background task takes them,
so a proxied call pays nothing for metrics; the gauges (queues, pools, processes, caches)
are read when ``/metrics`` is scraped. Text exposition format 0.0.4.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from patchbay.audit.events import AuditEvent

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; proxied calls sit in the low milliseconds, upstream tools can take a minute.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

CallLabels = tuple[str, str, str, str, str]  # server, method, tool, channel, status


@dataclass(slots=True)
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    count: int = 0


class CallMetrics:
    """Call counts and latency histograms by server, method, tool, channel and status; security events."""

    def __init__(self) -> None:
        self.calls: dict[CallLabels, _Histogram] = {}
        self.security: dict[tuple[str, str], int] = {}

    def observe(self, event: AuditEvent) -> None:
        """Count one audit event (called by the audit writer's task, never on the request path)."""
        if event.event is not None:
            key2 = (event.event, event.status)
            self.security[key2] = self.security.get(key2, 0) + 1
            return
        key = (event.server_id or "", event.method or "", event.tool_name or "", event.channel, event.status)
        hist = self.calls.get(key)
        if hist is None:
            hist = self.calls[key] = _Histogram()
        seconds = event.duration_ms / 1000.0
        hist.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        hist.total += seconds
        hist.count += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}" if inner else ""


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) and not value.is_integer() else str(int(value))


class Exposition:
    """Builds one scrape's text."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a metric family."""
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """One sample line."""
        pairs = labels or {}
        self._lines.append(f"{name}{_labels(pairs.keys(), pairs.values())} {_number(value)}")

    def gauge(self, name: str, help_text: str, value: float, labels: dict[str, str] | None = None) -> None:
        """A one-sample gauge family."""
        self.family(name, "gauge", help_text)
        self.sample(name, value, labels)

    def counter(self, name: str, help_text: str, value: float) -> None:
        """A one-sample counter family."""
        self.family(name, "counter", help_text)
        self.sample(name, value)

    def text(self) -> str:
        """The whole exposition, newline-terminated."""
        return "\n".join(self._lines) + "\n"


_CALL_LABELS = ("server", "method", "tool", "channel", "status")


def render_calls(out: Exposition, metrics: CallMetrics) -> None:
    """The call counter, the latency histogram and the security-event counter."""
    calls = sorted(metrics.calls.items())
    out.family("patchbay_calls_total", "counter", "Calls handled, by server, method, tool, channel and status.")
    for key, hist in calls:
        out.sample("patchbay_calls_total", hist.count, dict(zip(_CALL_LABELS, key, strict=True)))
    out.family("patchbay_call_duration_seconds", "histogram", "Time from request to response, per call.")
    for key, hist in calls:
        base = dict(zip(_CALL_LABELS, key, strict=True))
        running = 0
        for bound, count in zip((*LATENCY_BUCKETS, float("inf")), hist.buckets, strict=True):
            running += count
            out.sample("patchbay_call_duration_seconds_bucket", running, {**base, "le": _number(bound)})
        out.sample("patchbay_call_duration_seconds_sum", hist.total, base)
        out.sample("patchbay_call_duration_seconds_count", hist.count, base)
    out.family("patchbay_security_events_total", "counter", "Security events (keys, failed auth, permissions).")
    for (event, status), count in sorted(metrics.security.items()):
        out.sample("patchbay_security_events_total", count, {"event": event, "status": status})


def hit_rate_gauges(out: Exposition, caches: Iterable[tuple[str, Callable[[], tuple[int, int]]]]) -> None:
    """Hits and misses of each named cache, as counters."""
    rows = [(name, *read()) for name, read in caches]
    out.family("patchbay_cache_hits_total", "counter", "Cache lookups answered from memory.")
    for name, hits, _misses in rows:
        out.sample("patchbay_cache_hits_total", hits, {"cache": name})
    out.family("patchbay_cache_misses_total", "counter", "Cache lookups that went to the database.")
    for name, _hits, misses in rows:
        out.sample("patchbay_cache_misses_total", misses, {"cache": name})
