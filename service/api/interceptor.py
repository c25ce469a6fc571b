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


class RpcInterceptor(grpc.aio.ServerInterceptor):
    """Logs each call and maps its errors."""

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
        quiet = method.startswith(_QUIET)
        if handler.unary_unary is not None:
            inner: Any = handler.unary_unary  # the stubs type handlers as synchronous

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                call = _Call(method, request, context, quiet, "unary")
                try:
                    _check(method, request)
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

            async def stream(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                call = _Call(method, request, context, quiet, "server_stream")
                try:
                    _check(method, request)
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

            async def bidi(
                requests: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                call = _Call(method, None, context, quiet, "bidi_stream")
                try:
                    async for item in inner_bidi(requests, context):
                        yield item
                except BaseException as exc:
                    await call.fail(exc)
                finally:
                    call.done()

            return grpc.stream_stream_rpc_method_handler(
                bidi,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _Call:
    def __init__(
        self,
        method: str,
        request: Any,
        context: grpc.aio.ServicerContext[Any, Any],
        quiet: bool,
        kind: str,
    ) -> None:
        service, _, name = method.lstrip("/").rpartition("/")
        self.labels = (kind, service, name)
        metrics.GRPC_STARTED.labels(*self.labels).inc()
        self.method = method
        self.context = context
        self.quiet = quiet
        self.started = time.perf_counter()
        self.code = "OK"
        metadata = dict(
            (k, v) for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)
        )
        given = metadata.get("x-request-id", "")
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
                method=self.method,
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
        metrics.GRPC_HANDLED.labels(*self.labels, self.code).inc()
        metrics.GRPC_HANDLING.labels(*self.labels).observe(elapsed)
        fields = dict(
            method=self.method,
            code=self.code,
            request_id=self.request_id,
            duration_ms=round(elapsed * 1000, 2),
            integration_id=self.integration_id,
        )
        if self.quiet:
            log.debug("rpc", **fields)
        else:
            log.info("rpc", **fields)


_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


def _code_name(code: grpc.StatusCode | int | None) -> str:
    if isinstance(code, int) and code in _BY_NUMBER:
        code = _BY_NUMBER[code]
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
