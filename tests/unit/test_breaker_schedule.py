"""The breaker's decisions applied to integrations (service.domain.schedule): which trigger is
recorded, what is scheduled next, and what the event says. Pure: the time is passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from service.domain import schedule
from service.domain.breaker import BreakerPolicy, BreakerState, Halt, Outcome
from service.domain.model import Breaker, Integration
from service.domain.schedule import Attempt, Schedule, Verdict
from service.domain.status import Status, Trigger, transition
from service.domain.sync import SyncTrigger
from service.domain.taxonomy import ErrorCode, IntegrationError

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=15)
POLICY = BreakerPolicy(threshold=3, jitter=0.1)


def integration(
    status: Status = Status.ACTIVE, breaker: Breaker | None = None, **changes: object
) -> Integration:
    base = Integration(
        tenant_id="t",
        id=uuid4(),
        display_name="Team",
        connector_type="google_calendar",
        status=status,
        revision=4,
        created_at=NOW - timedelta(days=1),
        updated_at=NOW,
        sync_interval=INTERVAL,
        config={"calendar_id": "team"},
        breaker=breaker or Breaker(),
        next_sync_at=NOW,
    )
    return base.replace(**changes)


def error(
    code: ErrorCode = ErrorCode.SERVICE_UNAVAILABLE, retry_after: timedelta | None = None
) -> IntegrationError:
    return IntegrationError(code, "the provider answered HTTP 503", NOW, retry_after=retry_after)


def scheduled(verdict: Verdict) -> datetime:
    """When the verdict schedules the next sync (this one must schedule one)."""
    assert verdict.next_sync_at is not None
    return verdict.next_sync_at


@pytest.fixture
def rules() -> Schedule:
    return Schedule(POLICY, random.Random(7))


def failing(
    rules: Schedule,
    times: int,
    status: Status = Status.ACTIVE,
    code: ErrorCode = ErrorCode.SERVICE_UNAVAILABLE,
) -> Integration:
    """An integration after `times` failures in a row, each recorded as the engine does."""
    current = integration(status)
    for _ in range(times):
        verdict = rules.failed(current, error(code), NOW, what="sync run #1")
        target = transition(current.status, verdict.trigger)
        assert isinstance(target, Status)
        current = verdict.apply(current).replace(status=target)
    return current


def test_a_failure_below_the_threshold_schedules_a_retry_in_place_of_the_interval(
    rules: Schedule,
) -> None:
    verdict = rules.failed(integration(), error(), NOW, what="sync run #1")

    assert verdict.trigger is Trigger.FAILED and verdict.outcome is Outcome.RETRY_SCHEDULED
    assert verdict.breaker.consecutive_failures == 1 and not verdict.breaker.open
    assert verdict.next_sync_at == verdict.breaker.next_attempt_at
    assert timedelta(seconds=27) <= scheduled(verdict) - NOW <= timedelta(seconds=30)
    assert verdict.reason.startswith("sync run #1 failed: the provider answered HTTP 503; ")
    assert "failure 1 in a row (the safety brake stops at 3), next attempt at" in verdict.reason


def test_the_failure_that_reaches_the_threshold_opens_the_breaker(rules: Schedule) -> None:
    current = failing(rules, 2)

    verdict = rules.failed(current, error(), NOW, what="sync run #3")

    assert verdict.trigger is Trigger.BREAKER_OPENED and verdict.outcome is Outcome.BREAKER_OPENED
    assert verdict.breaker.open and verdict.breaker.opened_at == NOW
    assert verdict.breaker.consecutive_failures == 3
    assert timedelta(seconds=54) <= scheduled(verdict) - NOW <= timedelta(minutes=1)
    assert "the safety brake is on after 3 failures in a row" in verdict.reason


def test_failures_while_open_move_the_next_probe_further_out(rules: Schedule) -> None:
    current = failing(rules, 3)

    verdict = rules.failed(current, error(), NOW, what="probe")

    assert verdict.trigger is Trigger.FAILED and verdict.outcome is Outcome.PROBE_SCHEDULED
    assert timedelta(seconds=108) <= scheduled(verdict) - NOW <= timedelta(minutes=2)
    assert verdict.next_sync_at is not None
    at = verdict.next_sync_at.isoformat(timespec="seconds")
    assert verdict.reason.endswith(f"the safety brake stays on, next probe at {at}")


def test_an_integrations_own_threshold_wins(rules: Schedule) -> None:
    own = integration(breaker=Breaker(threshold=1))
    assert rules.threshold(own) == 1 and rules.threshold(integration()) == 3

    verdict = rules.failed(own, error(ErrorCode.RESOURCE_NOT_FOUND), NOW, what="sync run #1")

    # From ACTIVE straight to ERROR with the breaker open: one event, not two.
    assert verdict.trigger is Trigger.BREAKER_OPENED
    assert transition(Status.ACTIVE, verdict.trigger) is Status.ERROR
    assert verdict.breaker.threshold == 1


def test_a_lone_5xx_never_opens_the_breaker_even_at_threshold_1(rules: Schedule) -> None:
    own = integration(breaker=Breaker(threshold=1))

    first = rules.failed(own, error(), NOW, what="sync run #1")
    second = rules.failed(
        first.apply(own).replace(status=Status.ERROR), error(), NOW, what="sync run #2"
    )

    assert first.trigger is Trigger.FAILED and not first.breaker.open
    assert second.trigger is Trigger.BREAKER_OPENED


def test_rejected_credentials_disconnect_and_schedule_nothing(rules: Schedule) -> None:
    verdict = rules.failed(
        integration(), error(ErrorCode.INVALID_CREDENTIALS), NOW, what="sync run #1"
    )

    assert verdict.trigger is Trigger.CREDENTIALS_REJECTED
    assert verdict.outcome is Outcome.DISCONNECTED
    assert verdict.breaker.halt is Halt.DISCONNECTED and verdict.next_sync_at is None
    assert "nothing is attempted until Reauthorize" in verdict.reason


def test_a_resource_rejected_during_the_first_verification_waits_for_a_person(
    rules: Schedule,
) -> None:
    testing = integration(
        Status.TESTING, breaker=Breaker(BreakerState(consecutive_failures=2), threshold=4)
    )

    verdict = rules.failed(
        testing, error(ErrorCode.RESOURCE_NOT_FOUND), NOW, what="connection test"
    )

    assert verdict.trigger is Trigger.CONFIG_REJECTED and verdict.outcome is None
    assert verdict.breaker == Breaker(threshold=4) and verdict.next_sync_at is None


def test_auth_errors_wait_on_the_probe_schedule(rules: Schedule) -> None:
    verdict = rules.failed(integration(), error(ErrorCode.ACCESS_DENIED), NOW, what="sync")

    assert not verdict.breaker.open
    assert timedelta(seconds=54) <= scheduled(verdict) - NOW <= timedelta(minutes=1)


def test_retry_after_is_a_floor(rules: Schedule) -> None:
    verdict = rules.failed(
        integration(), error(ErrorCode.RATE_LIMITED, timedelta(minutes=10)), NOW, what="sync run #1"
    )

    assert verdict.next_sync_at == NOW + timedelta(minutes=10)


def test_a_successful_sync_closes_and_puts_the_jittered_interval_back(rules: Schedule) -> None:
    current = failing(rules, 2)

    verdict = rules.succeeded(current, NOW, what="sync run #3 succeeded", attempt=Attempt.SYNC)

    assert verdict.trigger is Trigger.SUCCEEDED and verdict.outcome is Outcome.CLOSED
    assert verdict.breaker == Breaker() and verdict.reason == "sync run #3 succeeded"
    assert NOW + INTERVAL * 0.9 <= scheduled(verdict) <= NOW + INTERVAL


def test_a_test_that_succeeds_while_open_reactivates_and_a_sync_from_the_cursor_is_due(
    rules: Schedule,
) -> None:
    current = failing(rules, 3)
    attempt = Attempt.TEST

    verdict = rules.succeeded(
        current, NOW, what=f"{attempt.value} succeeded in 0.10s", attempt=attempt
    )

    assert verdict.trigger is Trigger.REACTIVATED and verdict.outcome is Outcome.REACTIVATED
    assert transition(Status.ERROR, verdict.trigger) is Status.ACTIVE
    assert not verdict.breaker.open and verdict.breaker.consecutive_failures == 0
    assert verdict.next_sync_at == NOW
    assert "reactivated itself; syncing from where it left off" in verdict.reason
    after = verdict.apply(current).replace(status=Status.ACTIVE)
    assert schedule.sync_trigger(after) is SyncTrigger.REACTIVATION


def test_a_sync_that_succeeds_while_open_reactivates_on_the_regular_interval(
    rules: Schedule,
) -> None:
    verdict = rules.succeeded(
        failing(rules, 3), NOW, what="sync run #9 succeeded", attempt=Attempt.SYNC
    )

    assert verdict.trigger is Trigger.REACTIVATED
    assert scheduled(verdict) > NOW and verdict.breaker.next_attempt_at is None


def test_a_first_verification_makes_a_regular_sync_due_at_once(rules: Schedule) -> None:
    verdict = rules.succeeded(
        integration(Status.TESTING, next_sync_at=None),
        NOW,
        what="connection test succeeded in 0.10s",
        attempt=Attempt.TEST,
    )

    assert verdict.trigger is Trigger.SUCCEEDED and verdict.next_sync_at == NOW
    assert schedule.sync_trigger(verdict.apply(integration())) is SyncTrigger.SCHEDULED


def test_a_test_of_an_active_integration_keeps_its_schedule(rules: Schedule) -> None:
    later = NOW + timedelta(minutes=7)
    verdict = rules.succeeded(integration(next_sync_at=later), NOW, what="ok", attempt=Attempt.TEST)

    assert verdict.next_sync_at == later


def test_pause_halts_everything_and_resume_closes_with_a_sync_due_now(rules: Schedule) -> None:
    opened = failing(rules, 3).breaker

    paused = schedule.paused(opened)
    resumed = schedule.resumed(paused, NOW)

    assert paused.halt is Halt.PAUSED and paused.next_attempt_at is None
    assert paused.consecutive_failures == 3  # the streak stays visible
    assert resumed.state == BreakerState(next_attempt_at=NOW) and not resumed.open
    assert schedule.reset(Breaker(paused.state, threshold=2)) == Breaker(threshold=2)


def test_the_kind_of_scheduled_run() -> None:
    assert schedule.sync_trigger(integration()) is SyncTrigger.SCHEDULED
    retrying = Breaker(BreakerState(consecutive_failures=1, next_attempt_at=NOW))
    assert schedule.sync_trigger(integration(breaker=retrying)) is SyncTrigger.RETRY


def test_the_breaker_round_trips_through_json_and_reads_old_snapshots() -> None:
    opened = Breaker(
        BreakerState(
            consecutive_failures=3,
            open=True,
            opened_at=NOW,
            next_attempt_at=NOW + timedelta(minutes=2),
            slow_steps=2,
        ),
        threshold=3,
    )
    assert Breaker.from_json(opened.to_json()) == opened
    halted = Breaker(BreakerState(consecutive_failures=1, halt=Halt.DISCONNECTED))
    assert Breaker.from_json(halted.to_json()) == halted
    old = {
        "consecutive_failures": 2,
        "open": False,
        "opened_at": None,
        "next_attempt_at": None,
        "threshold": None,
        "probe_interval": None,
    }
    assert Breaker.from_json(old) == Breaker(BreakerState(consecutive_failures=2))


def test_late_after_twice_the_interval_without_a_successful_sync() -> None:
    synced = integration(last_synced_at=NOW)

    assert synced.late_at == NOW + 2 * INTERVAL
    assert not synced.late(NOW + 2 * INTERVAL)
    assert synced.late(NOW + 2 * INTERVAL + timedelta(seconds=1))
    assert integration(Status.PAUSED, last_synced_at=NOW).late_at is None
    never = integration(Status.ERROR)
    assert never.late_at == never.created_at + 2 * INTERVAL


def test_a_probe_that_succeeds_while_open_only_half_opens_the_brake(rules: Schedule) -> None:
    current = failing(rules, 3)

    verdict = rules.succeeded(current, NOW, what="probe succeeded in 0.10s", attempt=Attempt.PROBE)

    assert verdict.trigger is Trigger.PROBE_SUCCEEDED and verdict.outcome is Outcome.PROBE_PASSED
    assert transition(Status.ERROR, verdict.trigger) is Status.ERROR  # still braked
    assert verdict.breaker.open and verdict.breaker.state.trial
    assert verdict.breaker.consecutive_failures == current.breaker.consecutive_failures
    assert verdict.next_sync_at == NOW  # the trial sync is due at once
    assert "released once that sync succeeds" in verdict.reason
    trial = verdict.apply(current)
    assert schedule.sync_trigger(trial) is SyncTrigger.REACTIVATION
    assert not schedule.probing(trial)  # the next attempt is the sync, not another probe


def test_the_trial_sync_succeeding_reactivates(rules: Schedule) -> None:
    current = failing(rules, 3)
    trial = rules.succeeded(current, NOW, what="probe", attempt=Attempt.PROBE).apply(current)

    verdict = rules.succeeded(trial, NOW, what="sync run #4 succeeded", attempt=Attempt.SYNC)

    assert verdict.trigger is Trigger.REACTIVATED
    assert not verdict.breaker.open and verdict.breaker.consecutive_failures == 0


def test_the_trial_sync_failing_keeps_the_brake_on_and_the_probes_slowing(
    rules: Schedule,
) -> None:
    current = failing(rules, 3)
    opened_at = current.breaker.opened_at
    delays = []
    for _ in range(3):  # probe passes, the sync fails again with the same error: no flapping
        trial = rules.succeeded(current, NOW, what="probe", attempt=Attempt.PROBE).apply(current)
        verdict = rules.failed(trial, error(ErrorCode.INTERNAL), NOW, what="sync run #5")
        assert verdict.trigger is Trigger.FAILED and verdict.outcome is Outcome.TRIAL_FAILED
        assert transition(Status.ERROR, verdict.trigger) is Status.ERROR
        assert verdict.breaker.open and not verdict.breaker.state.trial
        assert verdict.breaker.opened_at == opened_at
        assert "the probe had passed but the sync still fails" in verdict.reason
        assert verdict.next_sync_at is not None
        delays.append(verdict.next_sync_at - NOW)
        current = verdict.apply(trial)
    assert delays == sorted(delays) and delays[0] < delays[-1]  # the probe interval grows
