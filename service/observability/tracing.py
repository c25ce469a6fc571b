"""OpenTelemetry tracing: off unless the standard `OTEL_*` environment variables ask for it.

When on, one trace shows an RPC (the gRPC server instrumentation), its queries (asyncpg) and
its provider calls (aiohttp client); each background sync run is a trace of its own with its
pages as spans; and every log line written inside a span carries `trace_id` and `span_id`.

It is on when `OTEL_TRACES_EXPORTER` names an exporter (`otlp` or `console`), or when an
OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
exported over OTLP/gRPC); `OTEL_SDK_DISABLED=true` turns it off. The SDK reads the rest
itself: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, the
exporter's headers, certificates and timeouts.

Provider URLs are recorded redacted (no user info, query values masked): a feed URL's query
can be its secret. Query parameters are never recorded, only statements.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from typing import Any

import grpc
import structlog
from opentelemetry import trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from yarl import URL

from service.connectors.http import redact

log = structlog.get_logger(__name__)

DEFAULT_SERVICE_NAME = "integrations-service"

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: TracerProvider | None = None


def wanted(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return any(
        environ.get(name)
        for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(environ: Mapping[str, str] | None = None) -> TracerProvider | None:
    """Turn tracing on when the environment asks (see the module docstring); the provider,
    or None when tracing stays off. Call before the app starts."""
    environ = os.environ if environ is None else environ
    if not wanted(environ):
        return None
    attributes = {} if environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: DEFAULT_SERVICE_NAME}
    provider = TracerProvider(resource=Resource.create(attributes))
    names = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() or "otlp"
    for name in (n.strip() for n in names.split(",") if n.strip()):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    enable(provider)
    log.info("tracing_on", exporters=names)
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (use otlp or console)")


def enable(provider: TracerProvider) -> None:
    """Trace with `provider`: instrument asyncpg and aiohttp clients (sessions opened from
    now on), and have servers built from now on trace their RPCs."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("service")
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
    AioHttpClientInstrumentor().instrument(tracer_provider=provider, url_filter=_redacted)


def disable() -> None:
    """Stop tracing (undo `enable`; tests use it)."""
    global _tracer, _provider
    if _provider is None:
        return
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
    AioHttpClientInstrumentor().uninstrument()
    _tracer, _provider = trace.NoOpTracer(), None


def enabled() -> bool:
    return _provider is not None


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    """The gRPC server interceptors that trace RPCs (none while tracing is off)."""
    if _provider is None:
        return []
    interceptor: grpc.aio.ServerInterceptor = aio_server_interceptor(  # type: ignore[no-untyped-call]
        tracer_provider=_provider
    )
    return [interceptor]


@contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[trace.Span]:
    """A span around the block, child of the current one (a new trace when there is none)."""
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def add_trace_ids(
    _logger: object, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` and `span_id` of the current span, when tracing is on."""
    if _provider is None:
        return event
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event.setdefault("trace_id", format(context.trace_id, "032x"))
        event.setdefault("span_id", format(context.span_id, "016x"))
    return event


def _redacted(url: URL) -> str:
    return redact(url)
