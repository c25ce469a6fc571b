"""Spans for the database's statements (OpenTelemetry's asyncpg instrumentation), switched by
service.observability.tracing: which driver runs the statements is storage's business."""

from __future__ import annotations

from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.trace import TracerProvider


def instrument(provider: TracerProvider) -> None:
    """Trace every statement from now on with `provider`."""
    AsyncPGInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]


def uninstrument() -> None:
    AsyncPGInstrumentor().uninstrument()  # type: ignore[no-untyped-call]
