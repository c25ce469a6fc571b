"""Around every RPC: one log line (method, code, duration, integration id, request id), the
gRPC server metrics, and the guarantee that no exception escapes as an opaque INTERNAL with a
traceback.

A body that does not decode as the RPC's request reaches the wrapped handler as a value
instead of failing inside gRPC (which would answer UNKNOWN and log nothing): it is answered
INVALID_ARGUMENT `MALFORMED_REQUEST` and logged like every other call. Every IntegrationService
request then has its strings and lists checked (service.api.request_checks) before the handler
runs. Domain errors become their gRPC status with details (service.api.error_status); anything
else is logged with a support reference and answered INTERNAL quoting that reference.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog

from service.api import request_checks
from service.api.error_status import to_grpc_status
from service.domain.exceptions import Internal, MalformedRequest, ServiceError
from service.domain.validation import raise_if
from service.observability import metrics

log = structlog.get_logger("rpc")

_QUIET = ("/grpc.health.", "/grpc.reflection.")
#: The RPCs whose requests are checked field by field before their handler runs.
_CHECKED = "/integrations.v1.IntegrationService/"
#: A caller's x-request-id is echoed and logged only if it is this short and printable.
MAX_REQUEST_ID_HEADER = 128


class _Undecodable:
    """What a request body that does not decode becomes, for the handler to refuse."""

    def __init__(self, request_type: str) -> None:
        self.request_type = request_type


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer`, returning an `_Undecodable` instead of raising."""
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)
    descriptor = getattr(owner, "DESCRIPTOR", None)
    request_type = str(getattr(descriptor, "full_name", "request"))

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, and anything else a parser may raise on garbage
            return _Undecodable(request_type)

    return decode


def _check(method: str, request: Any) -> None:
    """Refuse an undecodable body, and bad strings or lists of a service request."""
    if isinstance(request, _Undecodable):
        raise MalformedRequest(request.request_type)
    if method.startswith(_CHECKED):
        raise_if(request_checks.violations(request))


async def _checked(method: str, requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """A stream's requests, each checked as a unary request is: the first that does not
    decode ends the call INVALID_ARGUMENT (the handler sees only real messages)."""
    async for request in requests:
        _check(method, request)
        yield request


class RpcInterceptor(grpc.aio.ServerInterceptor):
    """Logs each call and maps its errors.

    gRPC asks the interceptor for every call; the wrapped handler of a method is built once
    and reused (with the method's metric series already looked up), so a call costs only its
    own bookkeeping."""

    def __init__(self) -> None:
        #: method -> (the handler that was wrapped, the wrapper)
        self._wrapped: dict[str, tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        method: str = details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _wrap(method, handler)
        if wrapped is not handler:
            self._wrapped[method] = (handler, wrapped)
        return wrapped


def _wrap(method: str, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with logging, metrics, request checks and error mapping around it."""
    if handler.unary_unary is not None:
        inner: Any = handler.unary_unary  # the stubs type handlers as synchronous
        m = _Method(method, "unary")

        async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            call = _Call(m, request, context)
            try:
                _check(m.method, request)
                return await inner(request, context)
            except BaseException as exc:
                await call.fail(exc)
            finally:
                call.done()

        return grpc.unary_unary_rpc_method_handler(
            unary,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream is not None:
        inner_stream: Any = handler.unary_stream
        m = _Method(method, "server_stream")

        async def stream(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = _Call(m, request, context)
            try:
                _check(m.method, request)
                async for item in inner_stream(request, context):
                    yield item
            except BaseException as exc:
                await call.fail(exc)
            finally:
                call.done()

        return grpc.unary_stream_rpc_method_handler(
            stream,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.stream_stream is not None:
        inner_bidi: Any = handler.stream_stream
        m = _Method(method, "bidi_stream")

        async def bidi(
            requests: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            call = _Call(m, None, context)
            try:
                async for item in inner_bidi(_checked(m.method, requests), context):
                    yield item
            except BaseException as exc:
                await call.fail(exc)
            finally:
                call.done()

        return grpc.stream_stream_rpc_method_handler(
            bidi,
            request_deserializer=_lenient(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


class _Method:
    """One RPC method: its name, whether its calls are logged at info, and its metric series
    (looked up once: a labelled child is a dictionary lookup under a lock)."""

    def __init__(self, method: str, kind: str) -> None:
        self.method = method
        self.quiet = method.startswith(_QUIET)
        service, _, name = method.lstrip("/").rpartition("/")
        self._labels = (kind, service, name)
        self.started = metrics.GRPC_STARTED.labels(*self._labels)
        self.handling = metrics.GRPC_HANDLING.labels(*self._labels)
        self._handled: dict[str, Any] = {}

    def handled(self, code: str) -> Any:
        child = self._handled.get(code)
        if child is None:
            child = self._handled[code] = metrics.GRPC_HANDLED.labels(*self._labels, code)
        return child


class _Call:
    def __init__(
        self, m: _Method, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        m.started.inc()
        self.m = m
        self.context = context
        self.started = time.perf_counter()
        self.code = "OK"
        given = ""
        for key, value in context.invocation_metadata() or ():
            if key == "x-request-id" and isinstance(value, str):
                given = value
        usable = len(given) <= MAX_REQUEST_ID_HEADER and given.isascii() and given.isprintable()
        self.request_id = given if given and usable else uuid.uuid4().hex
        ident = getattr(request, "id", "")
        # Logged before the request is checked: never more than an id's worth of it.
        self.integration_id = ident[:64] if isinstance(ident, str) and ident else None
        context.set_trailing_metadata((("x-request-id", self.request_id),))

    async def fail(self, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AbortError):
            self.code = _code_name(self.context.code())
            raise exc
        if not isinstance(exc, Exception):  # CancelledError, KeyboardInterrupt, SystemExit
            self.code = "CANCELLED"
            raise exc
        if not isinstance(exc, ServiceError):
            reference = uuid.uuid4().hex[:12]
            log.error(
                "rpc_crashed",
                method=self.m.method,
                request_id=self.request_id,
                support_reference=reference,
                exc_info=exc,
            )
            exc = Internal(reference)
        status = to_grpc_status(exc)
        self.code = status.code.name
        trailing = (*status.trailing_metadata, ("x-request-id", self.request_id))
        await self.context.abort(status.code, status.details, trailing)

    def done(self) -> None:
        elapsed = time.perf_counter() - self.started
        if self.code == "OK":  # a handler may set a status without raising (health does)
            self.code = _code_name(self.context.code() or grpc.StatusCode.OK)
        m = self.m
        m.handled(self.code).inc()
        m.handling.observe(elapsed)
        (log.debug if m.quiet else log.info)(
            "rpc",
            method=m.method,
            code=self.code,
            request_id=self.request_id,
            duration_ms=round(elapsed * 1000, 2),
            integration_id=self.integration_id,
        )


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _code_name(code: grpc.StatusCode | int | None) -> str:
    if isinstance(code, int) and code in _BY_NUMBER:
        code = _BY_NUMBER[code]
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
