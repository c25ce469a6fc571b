"""The API's fixed mappings: enums by name, error classes to codes, page tokens."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given
from hypothesis import strategies as st
from integrations.v1 import integration_pb2 as pb

from service.api import convert
from service.api.error_status import DOMAIN, to_grpc_status
from service.api.kept import Kept
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


@given(st.datetimes(timezones=st.just(UTC) | st.none()))
def test_timestamps_are_what_protobuf_makes_of_the_same_time(value: datetime) -> None:
    expected = timestamp_pb2.Timestamp()
    expected.FromDatetime(value)
    assert convert.timestamp(value) == expected


def test_a_shown_configuration_is_the_stored_one_and_stays_so() -> None:
    first = {"calendar_id": "team@example.com", "api_base_url": "http://127.0.0.1:1/v3"}
    shown = pb.Integration(config=convert.config_out("google_calendar", first))
    shown.config.google_calendar.calendar_id = "changed by a caller"
    again = convert.config_out("google_calendar", dict(first))
    assert again.google_calendar.calendar_id == "team@example.com"
    other = convert.config_out("google_calendar", {**first, "calendar_id": "other"})
    assert other.google_calendar.calendar_id == "other"


def test_plugin_configurations_that_python_finds_equal_are_shown_as_stored() -> None:
    shown = [convert.config_out("acme", {"flag": v}).plugin["flag"] for v in (1.0, True, 1.0)]
    assert [type(v) for v in shown] == [float, bool, float]


def test_kept_messages_are_bounded_and_the_oldest_goes_first() -> None:
    kept: Kept[int, pb.Integration] = Kept(2)
    first, second, third = (pb.Integration(display_name=name) for name in "abc")
    for key, message in enumerate((first, second, third)):
        assert kept.keep(key, message) is message
    assert kept.get(0) is None
    assert kept.get(1) is second
    assert kept.get(2) is third
