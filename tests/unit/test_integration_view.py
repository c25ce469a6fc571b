"""The API view of an integration (`convert.integration_out`): every fact a caller reads, and
which parts are present. Callers test presence (`HasField("last_error")`) as often as values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
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


OPENED = NOW - timedelta(minutes=30, microseconds=7)


def _failing() -> Integration:
    return _draft().replace(
        status=Status.ERROR,
        config={"calendar_id": "team@example.com"},
        credentials_kind="oauth",
        credentials_set_at=NOW - timedelta(days=2),
        sync_state=SyncState.SYNCED,
        last_error=IntegrationError(
            code=ErrorCode.RATE_LIMITED,
            message="429 from the provider",
            occurred_at=OPENED,
            retry_after=timedelta(seconds=90),
            support_reference="ref-1",
        ),
        breaker=Breaker(
            state=BreakerState(
                consecutive_failures=5,
                open=True,
                opened_at=OPENED,
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


def test_a_failing_integration_shows_every_fact_of_its_failure_and_brake() -> None:
    m = convert.integration_out(_failing(), now=NOW, threshold=5)
    assert m.config.google_calendar.calendar_id == "team@example.com"
    assert m.credentials.has_credentials and m.credentials.kind == pb.CREDENTIALS_KIND_OAUTH
    assert m.credentials.set_time == _stamp(NOW - timedelta(days=2))
    e = m.last_error
    assert (e.code, e.category) == (pb.ERROR_CODE_RATE_LIMITED, pb.ERROR_CATEGORY_SYNC)
    assert e.message == "429 from the provider" and e.what_it_means and e.solution
    assert e.retry_after.seconds == 90 and e.support_reference == "ref-1"
    assert e.occur_time == _stamp(OPENED)  # to the microsecond
    b = m.breaker
    assert (b.state, b.consecutive_failures, b.threshold) == (pb.BREAKER_STATE_OPEN, 5, 5)
    assert b.open_time == _stamp(OPENED) and b.next_attempt_time == _stamp(
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


#: For every field of an integration, another value than `_failing()`'s.
CHANGED: dict[str, object] = {
    "tenant_id": "other-tenant",
    "id": uuid4(),
    "display_name": "Renamed calendar",
    "connector_type": "ics_feed",
    "status": Status.ACTIVE,
    "revision": 8,
    "created_at": NOW - timedelta(days=1),
    "updated_at": NOW + timedelta(microseconds=1),
    "sync_interval": timedelta(minutes=30),
    "config": {"calendar_id": "other@example.com"},
    "missing_config_fields": ("calendar_id",),
    "credentials_kind": "bearer_token",
    "credentials_set_at": NOW - timedelta(days=2, microseconds=1),
    "sync_state": SyncState.SYNCING,
    "last_error": IntegrationError(
        code=ErrorCode.RATE_LIMITED, message="429 again", occurred_at=OPENED
    ),
    "breaker": Breaker(
        state=BreakerState(consecutive_failures=6, open=True, opened_at=OPENED, next_attempt_at=NOW)
    ),
    "last_synced_at": NOW - timedelta(hours=2),
    "next_sync_at": None,
    "record_count": 43,
    "push": Push(state=PushState.UNAVAILABLE, reason="the channel was refused"),
}


def test_every_field_of_an_integration_is_in_the_table_of_changes() -> None:
    assert set(CHANGED) == {f.name for f in dataclasses.fields(Integration)}


@pytest.mark.parametrize("name", sorted(CHANGED))
def test_a_change_to_any_field_is_shown_right_after_the_unchanged_view(name: str) -> None:
    """Views are kept between reads: the one shown after a change is the changed
    integration's, never the view kept from before it."""
    before = _failing()
    after = before.replace(**{name: CHANGED[name]})
    kept = convert.integration_out(before, now=NOW, threshold=5)
    shown = convert.integration_out(after, now=NOW, threshold=5)
    assert shown == convert._integration_view(after, now=NOW, threshold=5)
    assert convert.integration_out(before, now=NOW, threshold=5) == kept


def test_a_kept_view_follows_the_clock_and_the_threshold() -> None:
    active = _failing().replace(status=Status.ACTIVE, last_synced_at=NOW)
    assert not convert.integration_out(active, now=NOW, threshold=5).late
    later = NOW + 2 * active.interval + timedelta(microseconds=1)
    assert convert.integration_out(active, now=later, threshold=5).late
    assert convert.integration_out(active, now=NOW, threshold=9).breaker.threshold == 9


def test_a_configuration_value_of_another_type_is_another_view() -> None:
    """True == 1 in Python, but not in the configuration a caller reads back."""
    on = _draft().replace(connector_type="acme_plugin", config={"verify": True})
    one = on.replace(config={"verify": 1})
    convert.integration_out(on, now=NOW, threshold=5)
    shown = convert.integration_out(one, now=NOW, threshold=5)
    assert shown.config.plugin["verify"] == 1 and shown.config.plugin["verify"] is not True


def test_an_integration_whose_fields_cannot_be_kept_is_still_shown() -> None:
    """A plugin's config check may hand back its missing fields as a list, not a tuple."""
    draft = _draft().replace(connector_type="acme_plugin", missing_config_fields=["token"])
    shown = convert.integration_out(draft, now=NOW, threshold=5)
    assert list(shown.missing_config_fields) == ["token"]
