"""`IntegrationsError`: a failed call to the integrations service, with the google.rpc
details the service attaches (ErrorInfo, BadRequest, RetryInfo, PreconditionFailure) decoded
into fields a caller can branch on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import grpc
from google.rpc import error_details_pb2, status_pb2


@dataclass
class IntegrationsError(Exception):
    """A failed call, with the google.rpc details decoded."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    #: The ErrorInfo domain: "integrations.v1" for errors of this service.
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    #: field -> description, for INVALID_ARGUMENT
    violations: dict[str, str] = field(default_factory=dict)
    retry_after: timedelta | None = None
    #: For FAILED_PRECONDITION: the subjects that failed, e.g. the current status.
    precondition_subjects: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        return f"{text} [{self.reason}]" if self.reason else text

    @classmethod
    def from_rpc(cls, error: grpc.aio.AioRpcError) -> IntegrationsError:
        result = cls(error.code(), error.details() or "")
        for key, value in error.trailing_metadata() or ():
            if key != "grpc-status-details-bin" or not isinstance(value, bytes):
                continue
            for detail in status_pb2.Status.FromString(value).details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    result.reason, result.domain = info.reason, info.domain
                    result.metadata = dict(info.metadata)
                elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                    bad = error_details_pb2.BadRequest()
                    detail.Unpack(bad)
                    result.violations = {v.field: v.description for v in bad.field_violations}
                elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                    retry = error_details_pb2.RetryInfo()
                    detail.Unpack(retry)
                    result.retry_after = retry.retry_delay.ToTimedelta()
                elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                    failed = error_details_pb2.PreconditionFailure()
                    detail.Unpack(failed)
                    result.precondition_subjects = [v.subject for v in failed.violations]
        return result
