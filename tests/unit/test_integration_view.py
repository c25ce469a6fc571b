"""The API view of an integration (`convert.integration_out`): every fact a caller reads, and
which parts are present. Callers test presence (`HasField("last_error")`) as often as values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from google.protobuf import timestamp_pb2
from integrations.v1 import integration_pb2 as pb

from service.api import convert
from service.domain.breaker import BreakerState
from service.domain.model import Breaker, Integration
from service.domain.push import Push, PushState
from service.domain.status import Status, SyncState
from service.domain.taxonomy import ErrorCode, IntegrationError

NOW = datetime(2026, 12, 7, 12, 0, 0, 250_000, tzinfo=UTC)


def _stamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _draft() -> Integration:
    return Integration(
        tenant_id="default",
        id=uuid4(),
        display_name="Team calendar",
        connector_type="google_calendar",
        status=Status.DRAFT,
        revision=1,
        created_at=NOW,
        updated_at=NOW,
        sync_interval=timedelta(minutes=15),
    )


def test_a_failing_integration_shows_every_fact_of_its_failure_and_brake() -> None:
    opened = NOW - timedelta(minutes=30, microseconds=7)
    i = _draft().replace(
        status=Status.ERROR,
        config={"calendar_id": "team@example.com"},
        credentials_kind="oauth",
        credentials_set_at=NOW - timedelta(days=2),
        sync_state=SyncState.SYNCED,
        last_error=IntegrationError(
            code=ErrorCode.RATE_LIMITED,
            message="429 from the provider",
            occurred_at=opened,
            retry_after=timedelta(seconds=90),
            support_reference="ref-1",
        ),
        breaker=Breaker(
            state=BreakerState(
                consecutive_failures=5,
                open=True,
                opened_at=opened,
                next_attempt_at=NOW + timedelta(minutes=5),
            ),
        ),
        last_synced_at=NOW - timedelta(hours=1),
        next_sync_at=NOW + timedelta(minutes=5),
        record_count=42,
        push=Push(
            state=PushState.UNAVAILABLE,
            reason="no public callback URL",
            retry_at=NOW + timedelta(hours=1),
        ),
    )
    m = convert.integration_out(i, now=NOW, threshold=5)
    assert m.config.google_calendar.calendar_id == "team@example.com"
    assert m.credentials.has_credentials and m.credentials.kind == pb.CREDENTIALS_KIND_OAUTH
    assert m.credentials.set_time == _stamp(NOW - timedelta(days=2))
    e = m.last_error
    assert (e.code, e.category) == (pb.ERROR_CODE_RATE_LIMITED, pb.ERROR_CATEGORY_SYNC)
    assert e.message == "429 from the provider" and e.what_it_means and e.solution
    assert e.retry_after.seconds == 90 and e.support_reference == "ref-1"
    assert e.occur_time == _stamp(opened)  # to the microsecond
    b = m.breaker
    assert (b.state, b.consecutive_failures, b.threshold) == (pb.BREAKER_STATE_OPEN, 5, 5)
    assert b.open_time == _stamp(opened) and b.next_attempt_time == _stamp(
        NOW + timedelta(minutes=5)
    )
    assert m.last_sync_time == _stamp(NOW - timedelta(hours=1))
    assert m.next_sync_time == _stamp(NOW + timedelta(minutes=5))
    assert m.sync_interval.seconds == 15 * 60 and m.record_count == 42
    assert (m.push.state, m.push.reason) == (pb.PUSH_STATE_UNAVAILABLE, "no public callback URL")
    assert m.push.retry_time == _stamp(NOW + timedelta(hours=1))
    assert not m.push.HasField("expire_time")


def test_a_new_draft_shows_no_error_no_sync_times_and_a_closed_brake() -> None:
    m = convert.integration_out(_draft(), now=NOW, threshold=3)
    for absent in ("last_error", "last_sync_time", "next_sync_time"):
        assert not m.HasField(absent), absent
    assert not m.credentials.has_credentials and not m.credentials.HasField("set_time")
    assert m.HasField("breaker") and m.HasField("push") and m.HasField("credentials")
    assert (m.breaker.state, m.breaker.threshold) == (pb.BREAKER_STATE_CLOSED, 3)
    assert not m.breaker.HasField("open_time") and m.push.state == pb.PUSH_STATE_OFF
    assert m.create_time == m.update_time == _stamp(NOW)
    assert m.config == pb.ConnectorConfig() and not m.late
    assert list(m.allowed_actions) == [pb.ACTION_CONFIGURE, pb.ACTION_REAUTHORIZE, pb.ACTION_DELETE]
