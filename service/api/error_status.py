"""The one place where domain errors become gRPC statuses with google.rpc details.

Every error carries an ErrorInfo (stable UPPER_SNAKE reason, the service's domain, dynamic
parts in metadata); InvalidArgument adds BadRequest field violations, a disallowed transition a
PreconditionFailure, and anything retryable a RetryInfo, so grpcurl users and clients can act
on them without parsing messages.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.domain import exceptions as exc

DOMAIN = "integrations.v1"

# Any: google.rpc.Code values are untyped.
_CODES: dict[type[exc.ServiceError], Any] = {
    exc.InvalidArgument: code_pb2.INVALID_ARGUMENT,
    exc.NotFound: code_pb2.NOT_FOUND,
    exc.AlreadyExists: code_pb2.ALREADY_EXISTS,
    exc.FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    exc.Aborted: code_pb2.ABORTED,
    exc.OutOfRange: code_pb2.OUT_OF_RANGE,
    exc.ResourceExhausted: code_pb2.RESOURCE_EXHAUSTED,
    exc.Unavailable: code_pb2.UNAVAILABLE,
    exc.Unimplemented: code_pb2.UNIMPLEMENTED,
    exc.Internal: code_pb2.INTERNAL,
    exc.Unauthenticated: code_pb2.UNAUTHENTICATED,
}


def code_of(error: exc.ServiceError) -> int:
    """The google.rpc.Code of an error (the most specific class in the table wins)."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return int(_CODES[cls])
    return int(code_pb2.UNKNOWN)


def to_grpc_status(error: exc.ServiceError) -> grpc.Status:
    """The gRPC status (code, message, details trailer) that reports `error`."""
    details = [
        error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)
    ]
    if isinstance(error, exc.InvalidArgument) and error.violations:
        details.append(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description, reason=v.reason
                    )
                    for v in error.violations
                ]
            )
        )
    if isinstance(error, exc.TransitionNotAllowed):
        details.append(
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type="STATUS",
                        subject=error.current.value,
                        description=error.message,
                    )
                ]
            )
        )
    retry_after: timedelta | None = getattr(error, "retry_after", None)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(retry_after)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    packed = []
    for detail in details:
        holder = any_pb2.Any()
        holder.Pack(detail)
        packed.append(holder)
    status = status_pb2.Status(code=code_of(error), message=error.message, details=packed)
    result: grpc.Status = rpc_status.to_status(status)
    return result
