"""OpenTelemetry tracing, on only when ``PATCHBAY_OTLP_ENDPOINT`` is set.

One server span per MCP request (parented on the caller's ``traceparent`` when it sends
one), exported in batches over OTLP/HTTP by a background thread. While the span is open
its ``traceparent`` sits in ``patchbay.tracecontext.TRACEPARENT``, so HTTP upstreams
receive it and their spans join the same trace. With no endpoint configured nothing here
is imported and the request path only checks that ``gateway.tracing`` is None.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from patchbay.audit.events import AuditEvent
from patchbay.errors import InvalidInput
from patchbay.tracecontext import TRACEPARENT

if TYPE_CHECKING:
    from opentelemetry.trace import Span


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL for a collector base URL (``http://host:4318``) or a full one."""
    endpoint = endpoint.rstrip("/")
    if not endpoint.startswith(("http://", "https://")):
        raise InvalidInput(f"PATCHBAY_OTLP_ENDPOINT must be an http(s) URL, not {endpoint!r}")
    return endpoint if endpoint.endswith("/v1/traces") else f"{endpoint}/v1/traces"


class Tracing:
    """The tracer of one gateway process; ``shutdown`` flushes what is still buffered."""

    def __init__(self, endpoint: str, *, service_name: str = "patchbay") -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind
            from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise InvalidInput(
                "PATCHBAY_OTLP_ENDPOINT is set but OpenTelemetry is not installed: pip install 'mcp-patchbay[otel]'"
            ) from exc
        self.url = traces_url(endpoint)
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=self.url)))
        self._tracer = self._provider.get_tracer("patchbay")
        self._propagator = TraceContextTextMapPropagator()
        self._server_kind = SpanKind.SERVER

    @contextmanager
    def request_span(self, method: str, path: str, headers: dict[str, str]) -> Iterator[Span]:
        """A server span for one HTTP request, its context passed on to HTTP upstreams."""
        from opentelemetry.trace import use_span

        parent = self._propagator.extract(headers) if "traceparent" in headers else None
        span = self._tracer.start_span(f"{method} {path}", context=parent, kind=self._server_kind)
        carrier: dict[str, str] = {}
        with use_span(span, end_on_exit=True):
            self._propagator.inject(carrier)
            token = TRACEPARENT.set(carrier.get("traceparent"))
            try:
                yield span
            finally:
                TRACEPARENT.reset(token)

    def annotate_current(self, event: AuditEvent) -> None:
        """Copy what the audit record says about the call onto the request's span."""
        from opentelemetry.trace import get_current_span

        self.annotate(get_current_span(), event)

    @staticmethod
    def annotate(span: Span, event: AuditEvent) -> None:
        """Copy what the audit record says about the call onto ``span``."""
        span.update_name(f"mcp {event.method or event.event or 'request'}")
        attributes: dict[str, str | int | None] = {
            "http.response.status_code": event.http_status,
            "rpc.system": "jsonrpc",
            "rpc.method": event.method,
            "mcp.tool.name": event.tool_name,
            "patchbay.request_id": event.request_id,
            "patchbay.audit_record_id": event.id,
            "patchbay.server_id": event.server_id,
            "patchbay.key_prefix": event.key_prefix,
            "patchbay.status": event.status,
            "rpc.jsonrpc.error_code": event.error_code,
        }
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})
        if event.status != "ok":
            from opentelemetry.trace import Status, StatusCode

            span.set_status(Status(StatusCode.ERROR, event.status))

    def shutdown(self) -> None:
        """Export buffered spans and stop the exporter thread."""
        self._provider.shutdown()


def make_tracing(endpoint: str | None) -> Tracing | None:
    """A ``Tracing`` when an endpoint is configured, else None (and nothing imported)."""
    return Tracing(endpoint) if endpoint else None
