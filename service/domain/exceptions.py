"""The one error hierarchy of the service.

Every failure a caller can see is one of these; the API layer maps each class once to a gRPC
status code with google.rpc details (ErrorInfo always, BadRequest / RetryInfo / PreconditionFailure
where they apply). `reason` is the stable UPPER_SNAKE ErrorInfo reason; `metadata` carries the
dynamic parts. Messages never contain secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from service.domain.status import Action, Status


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (becomes a google.rpc.BadRequest field violation)."""

    field: str
    description: str
    reason: str = "INVALID_FIELD"


class ServiceError(Exception):
    """Base of every error a caller sees."""

    reason: str = "ERROR"

    def __init__(
        self, message: str, *, reason: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(ServiceError):
    """The request is malformed; nothing was changed."""

    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Iterable[FieldViolation], message: str | None = None) -> None:
        self.violations = tuple(violations)
        text = message or "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(text, metadata={"fields": ",".join(v.field for v in self.violations)})


class MalformedRequest(InvalidArgument):
    """The request body is not a message of the RPC's request type (it does not decode)."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, request_type: str) -> None:
        super().__init__(
            (),
            f"the request body is not a valid {request_type} message; send the protobuf "
            "encoding of the RPC's request",
        )
        self.metadata = {"request_type": request_type}


class NotFound(ServiceError):
    """The resource does not exist (or belongs to another tenant, which is the same to a caller)."""

    reason = "NOT_FOUND"

    def __init__(self, resource: str, resource_id: str, reason: str | None = None) -> None:
        super().__init__(
            f"{resource} {resource_id!r} not found",
            reason=reason or f"{resource.upper()}_NOT_FOUND",
            metadata={"resource": resource, "id": resource_id},
        )


class AlreadyExists(ServiceError):
    """A resource with this identity exists already."""

    reason = "ALREADY_EXISTS"


class FailedPrecondition(ServiceError):
    """The request is valid but the resource is not in a state that allows it."""

    reason = "FAILED_PRECONDITION"


class TransitionNotAllowed(FailedPrecondition):
    """The transition table has no row for this action from the current status."""

    reason = "TRANSITION_NOT_ALLOWED"

    def __init__(self, action: Action, current: Status, allowed: Iterable[Action], hint: str = ""):
        allowed = tuple(allowed)
        names = ", ".join(a.value for a in allowed) or "nothing"
        text = f"cannot {action.value} an integration in status {current.value}; allowed: {names}"
        super().__init__(
            f"{text}. {hint}".strip() if hint else text,
            metadata={
                "action": action.value,
                "current_status": current.value,
                "allowed_actions": ",".join(a.value for a in allowed),
            },
        )
        self.current = current
        self.allowed = allowed


class Aborted(ServiceError):
    """A concurrent change won: re-read and retry (stale etag)."""

    reason = "ABORTED"


class OutOfRange(ServiceError):
    """The request asks for something past what exists."""

    reason = "OUT_OF_RANGE"


class ResourceExhausted(ServiceError):
    """A limit was hit; retry later."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: timedelta | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Unavailable(ServiceError):
    """The service cannot answer now (shutting down, database unreachable); retry elsewhere."""

    reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after: timedelta | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after = retry_after


class Unimplemented(ServiceError):
    """The RPC exists in the API but this version of the service does not do it yet."""

    reason = "UNIMPLEMENTED"


class Unauthenticated(ServiceError):
    """The caller presented no valid API key."""

    reason = "UNAUTHENTICATED"


class Internal(ServiceError):
    """A malfunction inside the service; `support_reference` finds its context in the logs."""

    reason = "INTERNAL"

    def __init__(self, support_reference: str) -> None:
        super().__init__(
            "internal error; quote the support reference when raising a ticket",
            metadata={"support_reference": support_reference},
        )
        self.support_reference = support_reference
