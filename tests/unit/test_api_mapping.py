"""The API's fixed mappings: enums by name, error classes to codes, page tokens."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from integrations.v1 import integration_pb2 as pb

from service.api import convert
from service.api.error_status import DOMAIN, to_grpc_status
from service.domain import exceptions as exc
from service.domain.status import Action, Status


def test_every_domain_status_has_its_proto_twin() -> None:
    for status in Status:
        assert pb.Status.Name(convert.STATUS.to_pb[status]) == f"STATUS_{status.name}"
    assert convert.STATUS.out(None) == pb.STATUS_UNSPECIFIED


def test_an_enum_missing_on_one_side_fails_at_build_time() -> None:
    import enum

    class Extra(enum.Enum):
        DRAFT = "DRAFT"
        NOT_IN_PROTO = "X"

    with pytest.raises(ValueError):
        convert.EnumMap(Extra, pb.Status, "STATUS")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (exc.InvalidArgument([exc.FieldViolation("f", "bad")]), grpc.StatusCode.INVALID_ARGUMENT),
        (exc.NotFound("integration", "x"), grpc.StatusCode.NOT_FOUND),
        (
            exc.TransitionNotAllowed(Action.PAUSE, Status.DRAFT, [Action.CONFIGURE]),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (exc.Aborted("stale", reason="ETAG_MISMATCH"), grpc.StatusCode.ABORTED),
        (exc.Unimplemented("later"), grpc.StatusCode.UNIMPLEMENTED),
        (exc.Internal("ref123"), grpc.StatusCode.INTERNAL),
        (exc.Unauthenticated("key"), grpc.StatusCode.UNAUTHENTICATED),
        (exc.ResourceExhausted("slow"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_error_classes_map_to_codes_with_error_info(
    error: exc.ServiceError, code: grpc.StatusCode
) -> None:
    status = to_grpc_status(error)
    assert status.code is code
    details = dict(status.trailing_metadata)["grpc-status-details-bin"]
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    assert info.domain == DOMAIN
    assert info.reason == error.reason
    assert info.reason.isupper()
