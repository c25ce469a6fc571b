"""The breaker policy: closing, and people's actions (pause, resume, reauthorize)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from service.domain.breaker import (
    AttemptKind,
    BreakerPolicy,
    BreakerState,
    Halt,
    Outcome,
)
from service.domain.taxonomy import ErrorCode
from tests.support.breaker import (
    MIN,
    NOW,
    S,
    delay,
    exact,
    fail_times,
    open_state,
)

# --- closing ------------------------------------------------------------------------------------


def test_success_while_healthy_is_closed() -> None:
    decision = exact().record_success(BreakerState())
    assert decision.outcome is Outcome.CLOSED
    assert decision.state == BreakerState()
    assert decision.next_attempt_kind is AttemptKind.SYNC
    assert decision.next_attempt_at is None  # back to the regular interval


def test_success_while_retrying_resets_the_streak() -> None:
    breaker = exact()
    state = fail_times(breaker, ErrorCode.ACCESS_DENIED, 3)[-1].state
    decision = breaker.record_success(state)
    assert decision.outcome is Outcome.CLOSED
    assert decision.state == BreakerState()
    after = breaker.record_failure(decision.state, ErrorCode.ACCESS_DENIED, NOW)
    assert delay(after) == 1 * MIN  # the slow schedule starts over too


def test_success_while_open_reactivates() -> None:
    breaker = exact()
    decision = breaker.record_success(open_state(breaker))
    assert decision.outcome is Outcome.REACTIVATED
    assert decision.state == BreakerState()
    assert not decision.state.open
    assert decision.next_attempt_kind is AttemptKind.SYNC
    assert decision.next_attempt_at is None


def test_success_while_disconnected_reconnects() -> None:
    breaker = exact()
    disconnected = breaker.record_failure(BreakerState(), ErrorCode.INVALID_CREDENTIALS, NOW)
    decision = breaker.record_success(disconnected.state)
    assert decision.outcome is Outcome.CLOSED
    assert decision.state == BreakerState()


# --- people: pause, resume, reauthorize -----------------------------------------------------


def test_pause_stops_everything_including_probes() -> None:
    breaker = exact()
    opened = open_state(breaker)
    decision = breaker.on_pause(opened)
    assert decision.outcome is Outcome.PAUSED
    assert decision.next_attempt_at is None
    assert decision.next_attempt_kind is AttemptKind.NONE
    assert decision.state.halt is Halt.PAUSED
    assert decision.state.consecutive_failures == opened.consecutive_failures  # still visible
    assert decision.state.open


def test_pause_while_retrying_clears_the_retry() -> None:
    breaker = exact()
    state = fail_times(breaker, ErrorCode.INTERNAL, 2)[-1].state
    decision = breaker.on_pause(state)
    assert decision.next_attempt_at is None
    assert decision.next_attempt_kind is AttemptKind.NONE


@pytest.mark.parametrize("code", list(ErrorCode))
def test_failures_reported_while_paused_change_nothing(code: ErrorCode) -> None:
    breaker = exact()
    paused = breaker.on_pause(open_state(breaker)).state
    decision = breaker.record_failure(paused, code, NOW, retry_after=MIN)
    assert decision.outcome is Outcome.STILL_PAUSED
    assert decision.state == paused


def test_success_reported_while_paused_changes_nothing() -> None:
    breaker = exact()
    paused = breaker.on_pause(open_state(breaker)).state
    decision = breaker.record_success(paused)
    assert decision.outcome is Outcome.STILL_PAUSED
    assert decision.state == paused


def test_resume_closes_the_breaker_and_syncs_now() -> None:
    breaker = exact()
    paused = breaker.on_pause(open_state(breaker)).state
    decision = breaker.on_resume(paused, NOW)
    assert decision.outcome is Outcome.RESUMED
    assert decision.state == BreakerState(next_attempt_at=NOW)
    assert decision.next_attempt_kind is AttemptKind.SYNC
    # A fresh streak: the next failure is a first failure again.
    again = breaker.record_failure(decision.state, ErrorCode.INTERNAL, NOW)
    assert again.outcome is Outcome.RETRY_SCHEDULED
    assert again.state.consecutive_failures == 1


@pytest.mark.parametrize("halted_by", ["disconnect", "open"])
def test_reauthorize_closes_and_verifies_now(halted_by: str) -> None:
    breaker = exact()
    if halted_by == "disconnect":
        state = breaker.record_failure(BreakerState(), ErrorCode.INVALID_CREDENTIALS, NOW).state
    else:
        state = open_state(breaker)
    decision = breaker.on_reauthorize(state, NOW)
    assert decision.outcome is Outcome.REAUTHORIZED
    assert decision.state == BreakerState(next_attempt_at=NOW)
    assert decision.next_attempt_kind is AttemptKind.SYNC
    # The person acted, so a working verification is a plain close, not a self-reactivation.
    assert breaker.record_success(decision.state).outcome is Outcome.CLOSED


def test_reauthorize_while_paused_stays_paused() -> None:
    breaker = exact()
    paused = breaker.on_pause(open_state(breaker)).state
    decision = breaker.on_reauthorize(paused, NOW)
    assert decision.outcome is Outcome.STILL_PAUSED
    assert decision.state == paused


# --- validation ---------------------------------------------------------------------------------


def test_default_policy_matches_the_design() -> None:
    policy = BreakerPolicy()
    assert policy.threshold == 5
    assert (policy.backoff_initial, policy.backoff_max) == (30 * S, 15 * MIN)
    assert (policy.probe_initial, policy.probe_max) == (1 * MIN, 60 * MIN)
    assert policy.backoff_multiplier == policy.probe_multiplier == 2
    assert policy.jitter == 0.2
    assert policy.probe_timeout == 30 * S


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"threshold": 0}, "threshold must be at least 1"),
        ({"threshold": -3}, "threshold must be at least 1"),
        ({"threshold": 2.5}, "threshold must be an integer"),
        ({"threshold": True}, "threshold must be an integer"),
        ({"backoff_initial": 0 * S}, "backoff_initial must be positive"),
        ({"probe_initial": -S}, "probe_initial must be positive"),
        ({"probe_timeout": 0 * S}, "probe_timeout must be positive"),
        ({"backoff_max": 10 * S}, "backoff_max must not be shorter"),
        ({"probe_max": 30 * S}, "probe_max must not be shorter"),
        ({"backoff_multiplier": 0.5}, "backoff_multiplier must be at least 1"),
        ({"probe_multiplier": float("nan")}, "probe_multiplier must be at least 1"),
        ({"jitter": -0.1}, "jitter must be between 0 and 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
    ],
)
def test_invalid_policy_settings_are_rejected(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerPolicy(**settings)


@pytest.mark.parametrize(
    "fields",
    [
        {"consecutive_failures": -1},
        {"slow_steps": -1},
        {"open": True, "consecutive_failures": 5, "next_attempt_at": NOW},  # no opened_at
        {"opened_at": NOW},  # opened_at without open
        {"open": True, "opened_at": NOW, "next_attempt_at": NOW},  # open with no failures
        {"open": True, "opened_at": NOW, "consecutive_failures": 5},  # open, no probe scheduled
        {"halt": Halt.PAUSED, "next_attempt_at": NOW},  # halted yet scheduled
        {"next_attempt_at": datetime(2025, 3, 1, 12, 0)},  # naive
    ],
)
def test_inconsistent_states_are_rejected(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BreakerState(**fields)


def test_naive_now_is_rejected() -> None:
    breaker = exact()
    naive = datetime(2025, 3, 1, 12, 0)
    with pytest.raises(ValueError, match="timezone-aware"):
        breaker.record_failure(BreakerState(), ErrorCode.INTERNAL, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        breaker.on_resume(BreakerState(), naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        breaker.on_reauthorize(BreakerState(), naive)


def test_state_round_trips_through_json() -> None:
    breaker = exact()
    opened = open_state(breaker)
    states = [
        BreakerState(),
        fail_times(breaker, ErrorCode.ACCESS_DENIED, 2)[-1].state,
        opened,
        breaker.on_pause(opened).state,
        breaker.record_failure(opened, ErrorCode.INVALID_CREDENTIALS, NOW).state,
    ]
    for state in states:
        assert BreakerState.from_json(state.to_json()) == state
