"""A status_changed webhook carries the integration as WatchStatus shows it: every field of the
Integration message (but the configuration) has its key in the payload, with the same value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from integrations.v1 import integration_pb2 as pb

from service.api import convert
from service.domain.breaker import BreakerState
from service.domain.model import Breaker, Event, Integration
from service.domain.push import Push, PushState
from service.domain.status import Action, Status, SyncState
from service.domain.taxonomy import ErrorCode, IntegrationError
from service.domain.webhooks import integration_payload, status_changed

NOW = datetime(2026, 3, 2, 12, tzinfo=UTC)
THRESHOLD = 3


def _ts(value: str | None) -> timestamp_pb2.Timestamp | None:
    return convert.timestamp(datetime.fromisoformat(value)) if value else None


def _same_time(shown: Message, field: str, value: Any) -> bool:
    expected = _ts(value)
    return getattr(shown, field) == expected if expected else not shown.HasField(field)


#: For each field of the Integration message: whether the payload says the same of it.
SAME: dict[str, Callable[[pb.Integration, dict[str, Any]], bool]] = {
    "id": lambda o, p: o.id == p["id"],
    "display_name": lambda o, p: o.display_name == p["display_name"],
    "connector_type": lambda o, p: o.connector_type == p["connector_type"],
    "credentials": lambda o, p: (
        o.credentials.has_credentials == p["credentials"]["has_credentials"]
        and o.credentials.kind == convert._CREDENTIALS_KIND[p["credentials"]["kind"]]
        and _same_time(o.credentials, "set_time", p["credentials"]["set_at"])
    ),
    "status": lambda o, p: o.status == convert.STATUS.to_pb[Status(p["status"])],
    "sync_state": lambda o, p: (
        o.sync_state
        == convert.SYNC_STATE.out(SyncState(p["sync_state"]) if p["sync_state"] else None)
    ),
    "last_error": lambda o, p: (
        o.last_error.code == convert.ERROR_CODE.to_pb[ErrorCode(p["last_error"]["code"])]
        and o.last_error.solution == p["last_error"]["solution"]
        if p["last_error"]
        else not o.HasField("last_error")
    ),
    "breaker": lambda o, p: (
        pb.BreakerState.Name(o.breaker.state) == f"BREAKER_STATE_{p['breaker']['state']}"
        and o.breaker.consecutive_failures == p["breaker"]["consecutive_failures"]
        and o.breaker.threshold == (p["breaker"]["threshold"] or THRESHOLD)
        and _same_time(o.breaker, "open_time", p["breaker"]["opened_at"])
        and _same_time(o.breaker, "next_attempt_time", p["breaker"]["next_attempt_at"])
    ),
    "sync_interval": lambda o, p: o.sync_interval.seconds == p["sync_interval_seconds"],
    "last_sync_time": lambda o, p: _same_time(o, "last_sync_time", p["last_synced_at"]),
    "next_sync_time": lambda o, p: _same_time(o, "next_sync_time", p["next_sync_at"]),
    "record_count": lambda o, p: o.record_count == p["record_count"],
    # The revision (and the etag made of it) is the payload's own `revision`, beside it.
    "revision": lambda o, p: True,
    "etag": lambda o, p: True,
    "create_time": lambda o, p: _same_time(o, "create_time", p["created_at"]),
    "update_time": lambda o, p: _same_time(o, "update_time", p["updated_at"]),
    "missing_config_fields": lambda o, p: (
        list(o.missing_config_fields) == p["missing_config_fields"]
    ),
    "allowed_actions": lambda o, p: (
        list(o.allowed_actions) == [convert.ACTION.to_pb[Action(a)] for a in p["allowed_actions"]]
    ),
    "late": lambda o, p: o.late is p["late"],
    "push": lambda o, p: (
        o.push.state == convert.PUSH_STATE.to_pb[PushState(p["push"]["state"])]
        and o.push.reason == p["push"]["reason"]
        and _same_time(o.push, "expire_time", p["push"]["expires_at"])
        and _same_time(o.push, "retry_time", p["push"]["retry_at"])
    ),
}


def test_every_field_watch_status_shows_has_its_key_in_the_payload() -> None:
    # A field added to the message fails here until the webhook payload carries it too.
    assert set(SAME) == set(pb.Integration.DESCRIPTOR.fields_by_name) - {"config"}


def _integration(**changes: Any) -> Integration:
    base = Integration(
        tenant_id="default",
        id=uuid4(),
        display_name="Team calendar",
        connector_type="google_calendar",
        status=Status.ACTIVE,
        revision=7,
        created_at=NOW - timedelta(days=3),
        updated_at=NOW - timedelta(hours=2),
        sync_interval=timedelta(minutes=15),
        config={"calendar_id": "team"},
        credentials_kind="oauth",
        credentials_set_at=NOW - timedelta(days=3),
        sync_state=SyncState.SYNCED,
        last_synced_at=NOW - timedelta(hours=1),
        next_sync_at=NOW + timedelta(hours=5),
        record_count=42,
    )
    return base.replace(**changes)


CASES = {
    "pushing": _integration(
        push=Push(
            state=PushState.ACTIVE,
            expires_at=NOW + timedelta(days=6),
            check_at=NOW + timedelta(days=5),
            poll_interval=timedelta(hours=6),
            pending=True,
        )
    ),
    "late, push unavailable": _integration(
        last_synced_at=NOW - timedelta(hours=2),
        push=Push(
            state=PushState.UNAVAILABLE,
            reason="the calendar does not support push",
            retry_at=NOW + timedelta(hours=1),
        ),
    ),
    "braked, half open": _integration(
        status=Status.ERROR,
        last_error=IntegrationError(ErrorCode.RESOURCE_NOT_FOUND, "calendar gone", NOW),
        breaker=Breaker(
            BreakerState(
                consecutive_failures=4,
                open=True,
                opened_at=NOW - timedelta(hours=1),
                next_attempt_at=NOW + timedelta(minutes=5),
                trial=True,
            ),
            threshold=4,
        ),
    ),
    "draft without credentials": _integration(
        status=Status.DRAFT,
        credentials_kind=None,
        credentials_set_at=None,
        sync_state=None,
        last_synced_at=None,
        next_sync_at=None,
        missing_config_fields=("calendar_id",),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_payload_says_what_watch_status_says(case: str) -> None:
    integration = CASES[case]
    # As the API layer calls it: the integration's own threshold, else the deployment's.
    threshold = integration.breaker.threshold or THRESHOLD
    shown = convert.integration_out(integration, now=NOW, threshold=threshold)
    payload = integration_payload(integration, NOW)
    assert [f for f, same in SAME.items() if not same(shown, payload)] == []
    assert "config" not in payload  # it may hold secrets


def test_a_status_change_is_shown_as_of_when_it_happened() -> None:
    late = _integration(last_synced_at=NOW - timedelta(hours=1))  # late from NOW - 30 min
    event = Event(
        tenant_id="default",
        revision=8,
        integration_id=late.id,
        trigger="late",
        from_status=Status.ACTIVE,
        to_status=Status.ACTIVE,
        reason="not synced for 30m",
        actor="scheduler",
        occurred_at=NOW - timedelta(minutes=29),
        state=late,
    )
    assert status_changed(event)["integration"]["late"] is True
    earlier = replace(event, occurred_at=NOW - timedelta(minutes=31))
    assert status_changed(earlier)["integration"]["late"] is False
