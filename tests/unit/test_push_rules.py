"""The push rules (service.domain.push) and the deployment's push settings: which
integrations want a channel, which changes ask for a look, what a successful sync does to push,
and when a public URL makes push possible. Pure: the time is passed in."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from service.config import Settings
from service.domain.breaker import BreakerState
from service.domain.model import Breaker, Integration
from service.domain.push import Push, PushPolicy, PushState, affects, after_sync, wants_channel
from service.domain.status import Status

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
BRAKED = Breaker(
    BreakerState(consecutive_failures=5, open=True, opened_at=NOW, next_attempt_at=NOW)
)
POLICY = PushPolicy(address="https://integrations.example.com")
ACTIVE = Push(
    state=PushState.ACTIVE,
    expires_at=NOW + timedelta(days=6),
    check_at=NOW + timedelta(days=5),
    poll_interval=timedelta(hours=6),
)


def integration(**changes: object) -> Integration:
    base = Integration(
        tenant_id="t",
        id=uuid4(),
        display_name="Team",
        connector_type="google_calendar",
        status=Status.ACTIVE,
        revision=4,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW,
        sync_interval=timedelta(minutes=15),
        config={"calendar_id": "team"},
        last_synced_at=NOW - timedelta(hours=1),
        next_sync_at=NOW,
        push=ACTIVE,
    )
    return base.replace(**changes)


def synced(
    current: Integration,
    started: Integration | None = None,
    *,
    scheduled: bool = True,
    changes: int = 0,
    policy: PushPolicy = POLICY,
) -> tuple[Push, datetime | None, str]:
    after = after_sync(
        current,
        started or current,
        scheduled=scheduled,
        changes=changes,
        next_sync_at=NOW + timedelta(hours=6),
        now=NOW,
        policy=policy,
    )
    return after.push, after.next_sync_at, after.note


@pytest.mark.parametrize(
    ("changes", "wanted"),
    [
        ({}, True),
        ({"status": Status.ERROR}, True),
        ({"status": Status.PAUSED}, False),
        ({"status": Status.DISCONNECTED}, False),
        ({"status": Status.TESTING}, False),
        ({"breaker": BRAKED}, False),
        ({"last_synced_at": None}, False),
    ],
)
def test_a_channel_is_wanted_only_while_it_syncs_on_its_own_and_has_synced(
    changes: dict[str, object], wanted: bool
) -> None:
    assert wants_channel(integration(**changes)) is wanted


def test_changes_to_status_config_credentials_or_brake_ask_for_a_look_and_others_do_not() -> None:
    before = integration()
    assert affects(before, before.replace(status=Status.PAUSED))
    assert affects(before, before.replace(config={"calendar_id": "other"}))
    assert affects(before, before.replace(credentials_set_at=NOW))
    assert affects(before, before.replace(breaker=BRAKED))
    assert not affects(before, before.replace(display_name="Renamed", record_count=9))


def test_a_notification_during_the_sync_makes_the_next_one_due_at_once() -> None:
    started = integration(push=ACTIVE.replace(pending=True, notified_at=NOW - timedelta(5)))
    current = started.replace(push=started.push.replace(notified_at=NOW))
    push, due, note = synced(current, started, changes=1)
    assert push.pending and push.state is PushState.ACTIVE
    assert due == NOW and note == ""


def test_an_announced_sync_consumes_the_notification_and_keeps_the_long_interval() -> None:
    started = integration(push=ACTIVE.replace(pending=True, notified_at=NOW))
    push, due, note = synced(started, changes=3)
    assert not push.pending and push.state is PushState.ACTIVE
    assert due == NOW + timedelta(hours=6) and note == ""


def test_changes_no_notification_announced_fail_push_and_polling_takes_over() -> None:
    push, due, note = synced(integration(), changes=2)
    assert push.state is PushState.UNAVAILABLE
    assert push.reason == "a safety-net poll found 2 changes that no notification announced"
    assert push.retry_at == NOW + POLICY.retry_after and push.check_at == NOW
    assert push.poll_interval is None and push.expires_at is None
    assert due == NOW + timedelta(minutes=15)
    assert "push reported failed" in note and "every 15m" in note


@pytest.mark.parametrize("scheduled", [True, False])
def test_only_a_scheduled_poll_that_found_changes_judges_push(scheduled: bool) -> None:
    push, _, _ = synced(integration(), changes=0 if scheduled else 4, scheduled=scheduled)
    assert push.state is PushState.ACTIVE


def test_a_sync_without_a_channel_asks_for_one_where_push_is_configured() -> None:
    off = integration(push=Push())
    push, _, _ = synced(off)
    assert push.check_at == NOW
    push, _, _ = synced(off, policy=PushPolicy())
    assert push.check_at is None


def test_a_sync_of_a_type_that_cannot_push_never_asks_for_a_channel() -> None:
    covering = replace(POLICY, types=frozenset({"google_calendar"}))
    push, _, _ = synced(integration(push=Push()), policy=covering)
    assert push.check_at == NOW
    feed = integration(connector_type="ics_feed", push=Push())
    push, _, _ = synced(feed, policy=covering)
    assert push.check_at is None  # no write for the reconciler only to clear


def test_the_polling_interval_stretches_only_while_push_is_active() -> None:
    active = integration()
    assert active.interval == timedelta(hours=6)
    assert active.late_at == active.last_synced_at + timedelta(hours=12)  # type: ignore[operator]
    assert integration(push=Push()).interval == timedelta(minutes=15)
    longer = integration(sync_interval=timedelta(hours=24))
    assert longer.interval == timedelta(hours=24)


def test_push_state_survives_the_event_log() -> None:
    value = integration(push=ACTIVE.replace(pending=True, notified_at=NOW))
    assert Integration.from_json(value.to_json()).push == value.push
    assert Integration.from_json({**value.to_json(), "push": None}).push == Push()


@pytest.mark.parametrize(
    ("public_url", "push", "address", "refused"),
    [
        ("https://integrations.example.com/", True, "https://integrations.example.com", False),
        ("http://127.0.0.1:8080", True, "http://127.0.0.1:8080", False),
        ("http://[::1]:8080", True, "http://[::1]:8080", False),
        ("http://integrations.example.com", True, None, True),
        ("", True, None, False),
        ("https://integrations.example.com", False, None, False),
    ],
)
def test_push_needs_a_public_https_url_or_loopback_http(
    public_url: str, push: bool, address: str | None, refused: bool
) -> None:
    policy = replace(Settings(), public_url=public_url, push=push).push_policy
    assert policy.address == address
    assert bool(policy.refusal) is refused
    assert policy.configured is (address is not None or refused)


def test_renewing_after_expiry_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="renew"):
        replace(Settings(), push_renew_before=timedelta(days=8)).check()
