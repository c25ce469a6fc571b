"""Reading google.rpc details off a failed call, the way a client does."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2


@dataclass
class RpcFailure:
    """The parts of a failed call a client acts on."""

    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)
    retry_delay: float | None = None
    precondition_subjects: list[str] = field(default_factory=list)


def failure(error: grpc.aio.AioRpcError) -> RpcFailure:
    """Decode a call's status and its google.rpc details."""
    result = RpcFailure(error.code(), error.details() or "")
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
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
                    result.retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
                elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                    pre = error_details_pb2.PreconditionFailure()
                    detail.Unpack(pre)
                    result.precondition_subjects = [v.subject for v in pre.violations]
    return result
