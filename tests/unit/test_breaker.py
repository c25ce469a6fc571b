"""The breaker policy: counting, backoff, opening, probing, closing, and people's actions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.domain.breaker import (
    HANDLING,
    AttemptKind,
    BreakerPolicy,
    BreakerRules,
    BreakerState,
    Decision,
    Halt,
    Outcome,
)
from service.domain.taxonomy import ErrorCode

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)

COUNTING_CODES = [c for c in ErrorCode if c is not ErrorCode.INVALID_CREDENTIALS]
FAST_CODES = [
    ErrorCode.RESOURCE_NOT_FOUND,
    ErrorCode.RATE_LIMITED,
    ErrorCode.SERVICE_UNAVAILABLE,
    ErrorCode.INTERNAL,
]
SLOW_CODES = [ErrorCode.TOKEN_EXPIRED, ErrorCode.ACCESS_DENIED]


class FixedRandom(random.Random):
    """A Random whose draws are all `value`: 0.0 takes no jitter off, ~1.0 takes the most."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def exact(**settings: Any) -> BreakerRules:
    """A breaker without jitter, so schedules are exact."""
    return BreakerRules(BreakerPolicy(jitter=0, **settings), FixedRandom(0.0))


def fail_times(
    breaker: BreakerRules, code: ErrorCode, times: int, state: BreakerState | None = None
) -> list[Decision]:
    """`times` consecutive failures, each reported at NOW; every decision in order."""
    decisions = []
    current = state or BreakerState()
    for _ in range(times):
        decision = breaker.record_failure(current, code, NOW)
        decisions.append(decision)
        current = decision.state
    return decisions


def delay(decision: Decision) -> timedelta:
    assert decision.next_attempt_at is not None
    return decision.next_attempt_at - NOW


def open_state(breaker: BreakerRules) -> BreakerState:
    return fail_times(breaker, ErrorCode.INTERNAL, breaker.policy.threshold)[-1].state


# --- the per-code table ---------------------------------------------------------------------


def test_every_error_code_has_a_handling() -> None:
    assert set(HANDLING) == set(ErrorCode)


@pytest.mark.parametrize(
    ("code", "first_delay", "second_delay"),
    [
        (ErrorCode.RESOURCE_NOT_FOUND, 30 * S, 60 * S),
        (ErrorCode.TOKEN_EXPIRED, 1 * MIN, 2 * MIN),  # slow: the probe schedule
        (ErrorCode.ACCESS_DENIED, 1 * MIN, 2 * MIN),
        (ErrorCode.RATE_LIMITED, 30 * S, 60 * S),
        (ErrorCode.SERVICE_UNAVAILABLE, 30 * S, 60 * S),
        (ErrorCode.INTERNAL, 30 * S, 60 * S),
    ],
)
def test_each_counting_code_retries_a_sync_on_its_schedule(
    code: ErrorCode, first_delay: timedelta, second_delay: timedelta
) -> None:
    first, second = fail_times(exact(), code, 2)
    for decision, expected_delay, count in ((first, first_delay, 1), (second, second_delay, 2)):
        assert decision.outcome is Outcome.RETRY_SCHEDULED
        assert decision.state.consecutive_failures == count
        assert not decision.state.open
        assert decision.next_attempt_kind is AttemptKind.SYNC
        assert delay(decision) == expected_delay


def test_invalid_credentials_disconnects_and_is_never_attempted() -> None:
    decision = exact().record_failure(BreakerState(), ErrorCode.INVALID_CREDENTIALS, NOW)
    assert decision.outcome is Outcome.DISCONNECTED
    assert decision.state.halt is Halt.DISCONNECTED
    assert decision.next_attempt_at is None
    assert decision.next_attempt_kind is AttemptKind.NONE
    assert decision.state.consecutive_failures == 1


def test_invalid_credentials_while_open_stops_probing() -> None:
    breaker = exact()
    decision = breaker.record_failure(
        open_state(breaker), ErrorCode.INVALID_CREDENTIALS, NOW, retry_after=5 * MIN
    )
    assert decision.outcome is Outcome.DISCONNECTED
    assert not decision.state.open and decision.state.opened_at is None
    assert decision.next_attempt_kind is AttemptKind.NONE
    assert decision.next_attempt_at is None
    assert decision.state.consecutive_failures == breaker.policy.threshold + 1


def test_a_failed_test_after_disconnection_is_retried_normally() -> None:
    breaker = exact()
    disconnected = breaker.record_failure(BreakerState(), ErrorCode.INVALID_CREDENTIALS, NOW)
    decision = breaker.record_failure(disconnected.state, ErrorCode.SERVICE_UNAVAILABLE, NOW)
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert decision.state.halt is None
    assert decision.next_attempt_kind is AttemptKind.SYNC
    assert delay(decision) == 60 * S  # the streak went on: second failure


# --- opening ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", COUNTING_CODES)
@pytest.mark.parametrize("threshold", [2, 3, 5])
def test_opens_at_exactly_the_threshold(code: ErrorCode, threshold: int) -> None:
    decisions = fail_times(exact(threshold=threshold), code, threshold)
    assert [d.state.open for d in decisions] == [False] * (threshold - 1) + [True]
    opened = decisions[-1]
    assert opened.outcome is Outcome.BREAKER_OPENED
    assert opened.state.opened_at == NOW
    assert opened.state.consecutive_failures == threshold
    assert opened.next_attempt_kind is AttemptKind.PROBE


def test_default_threshold_is_five() -> None:
    decisions = fail_times(exact(), ErrorCode.INTERNAL, 5)
    assert [d.outcome for d in decisions] == [Outcome.RETRY_SCHEDULED] * 4 + [
        Outcome.BREAKER_OPENED
    ]


def test_threshold_override_per_integration() -> None:
    default = BreakerPolicy(jitter=0)
    overridden = default.with_overrides(threshold=2)
    assert overridden.threshold == 2
    assert overridden.backoff_initial == default.backoff_initial
    decisions = fail_times(BreakerRules(overridden, FixedRandom(0.0)), ErrorCode.INTERNAL, 2)
    assert [d.outcome for d in decisions] == [Outcome.RETRY_SCHEDULED, Outcome.BREAKER_OPENED]


def test_no_override_keeps_the_default_policy() -> None:
    policy = BreakerPolicy()
    assert policy.with_overrides(threshold=None) is policy


def test_invalid_override_is_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        BreakerPolicy().with_overrides(threshold=0)


def test_threshold_one_opens_on_the_first_non_transient_failure() -> None:
    decision = exact(threshold=1).record_failure(BreakerState(), ErrorCode.INTERNAL, NOW)
    assert decision.outcome is Outcome.BREAKER_OPENED
    assert delay(decision) == 1 * MIN


def test_a_single_transient_failure_never_opens_even_at_threshold_one() -> None:
    first, second = fail_times(exact(threshold=1), ErrorCode.SERVICE_UNAVAILABLE, 2)
    assert first.outcome is Outcome.RETRY_SCHEDULED
    assert not first.state.open
    assert delay(first) == 30 * S
    assert second.outcome is Outcome.BREAKER_OPENED


def test_a_transient_failure_after_another_failure_can_open_at_threshold_one() -> None:
    breaker = exact(threshold=1)
    state = breaker.record_failure(BreakerState(), ErrorCode.SERVICE_UNAVAILABLE, NOW).state
    decision = breaker.record_failure(state, ErrorCode.INTERNAL, NOW)
    assert decision.outcome is Outcome.BREAKER_OPENED


def test_a_transient_failure_completes_a_streak_of_two() -> None:
    breaker = exact(threshold=2)
    state = breaker.record_failure(BreakerState(), ErrorCode.ACCESS_DENIED, NOW).state
    decision = breaker.record_failure(state, ErrorCode.SERVICE_UNAVAILABLE, NOW)
    assert decision.outcome is Outcome.BREAKER_OPENED


# --- schedules ----------------------------------------------------------------------------------


def test_fast_backoff_doubles_up_to_its_cap() -> None:
    decisions = fail_times(exact(threshold=100), ErrorCode.INTERNAL, 8)
    assert [delay(d) for d in decisions] == [
        30 * S,
        60 * S,
        2 * MIN,
        4 * MIN,
        8 * MIN,
        15 * MIN,  # capped (16 min would exceed backoff_max)
        15 * MIN,
        15 * MIN,
    ]


def test_probe_schedule_doubles_from_one_minute_to_the_one_hour_cap() -> None:
    breaker = exact()
    decisions = fail_times(breaker, ErrorCode.SERVICE_UNAVAILABLE, 5 + 7)[4:]
    assert decisions[0].outcome is Outcome.BREAKER_OPENED
    assert all(d.outcome is Outcome.PROBE_SCHEDULED for d in decisions[1:])
    assert all(d.next_attempt_kind is AttemptKind.PROBE for d in decisions)
    assert all(d.state.opened_at == NOW for d in decisions)
    assert [delay(d) for d in decisions] == [
        1 * MIN,
        2 * MIN,
        4 * MIN,
        8 * MIN,
        16 * MIN,
        32 * MIN,
        60 * MIN,
        60 * MIN,
    ]
    assert decisions[-1].state.consecutive_failures == 12


def test_a_failed_probe_keeps_the_opening_time_and_counts_on() -> None:
    breaker = exact()
    opened = open_state(breaker)
    later = NOW + timedelta(hours=3)
    decision = breaker.record_failure(opened, ErrorCode.INTERNAL, later)
    assert decision.state.opened_at == NOW
    assert decision.state.consecutive_failures == 6
    assert decision.next_attempt_at == later + 2 * MIN


def test_auth_failures_that_open_the_breaker_continue_the_slow_schedule() -> None:
    decisions = fail_times(exact(), ErrorCode.ACCESS_DENIED, 6)
    assert [d.outcome for d in decisions] == [Outcome.RETRY_SCHEDULED] * 4 + [
        Outcome.BREAKER_OPENED,
        Outcome.PROBE_SCHEDULED,
    ]
    assert [delay(d) for d in decisions] == [m * MIN for m in (1, 2, 4, 8, 16, 32)]


def test_fast_failures_do_not_advance_the_slow_schedule() -> None:
    breaker = exact()
    state = fail_times(breaker, ErrorCode.SERVICE_UNAVAILABLE, 3)[-1].state
    decision = breaker.record_failure(state, ErrorCode.TOKEN_EXPIRED, NOW)
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert delay(decision) == 1 * MIN
    opened = breaker.record_failure(decision.state, ErrorCode.INTERNAL, NOW)
    assert opened.outcome is Outcome.BREAKER_OPENED
    assert delay(opened) == 2 * MIN  # the slow schedule continues where the auth retry left it


def test_long_streaks_stay_at_the_caps() -> None:
    policy = BreakerPolicy()
    assert policy.fast_delay(10_000) == policy.backoff_max
    assert policy.slow_delay(10_000) == policy.probe_max


def test_multiplier_one_keeps_delays_constant() -> None:
    policy = BreakerPolicy(backoff_multiplier=1, probe_multiplier=1)
    assert policy.fast_delay(1_000_000) == policy.backoff_initial
    assert policy.slow_delay(1_000_000) == policy.probe_initial


# --- jitter -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("jitter", "low", "high"), [(0.2, 24 * S, 30 * S), (1.0, 0 * S, 30 * S)])
def test_jitter_stays_within_its_fraction_below_the_delay(
    jitter: float, low: timedelta, high: timedelta
) -> None:
    breaker = BreakerRules(BreakerPolicy(jitter=jitter), random.Random(20250301))
    delays = [
        delay(breaker.record_failure(BreakerState(), ErrorCode.INTERNAL, NOW)) for _ in range(500)
    ]
    assert all(low <= d <= high for d in delays)
    spread = high - low
    assert min(delays) < low + spread / 10 and max(delays) > high - spread / 10
    assert len(set(delays)) > 100


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 30 * S), (0.5, 27 * S), (0.999999, 24 * S)])
def test_jitter_draw_maps_linearly_onto_the_range(draw: float, expected: timedelta) -> None:
    breaker = BreakerRules(BreakerPolicy(), FixedRandom(draw))
    actual = delay(breaker.record_failure(BreakerState(), ErrorCode.INTERNAL, NOW))
    assert abs(actual - expected) < timedelta(milliseconds=1)


def test_jittered_probes_never_exceed_the_cap() -> None:
    breaker = BreakerRules(BreakerPolicy(), random.Random(7))
    decisions = fail_times(breaker, ErrorCode.INTERNAL, 40)
    probes = [delay(d) for d in decisions if d.state.open]
    assert all(
        0.8 * breaker.policy.probe_max <= p <= breaker.policy.probe_max for p in probes[-20:]
    )


# --- Retry-After --------------------------------------------------------------------------------


def test_retry_after_longer_than_the_backoff_is_the_next_attempt() -> None:
    decision = exact().record_failure(
        BreakerState(), ErrorCode.RATE_LIMITED, NOW, retry_after=10 * MIN
    )
    assert decision.outcome is Outcome.RETRY_SCHEDULED
    assert delay(decision) == 10 * MIN


def test_retry_after_shorter_than_the_backoff_changes_nothing() -> None:
    decision = exact().record_failure(
        BreakerState(), ErrorCode.RATE_LIMITED, NOW, retry_after=5 * S
    )
    assert delay(decision) == 30 * S


def test_retry_after_is_a_floor_even_after_jitter() -> None:
    breaker = BreakerRules(BreakerPolicy(), FixedRandom(0.999999))  # jitter takes off ~6 s
    decision = breaker.record_failure(
        BreakerState(), ErrorCode.RATE_LIMITED, NOW, retry_after=29 * S
    )
    assert delay(decision) == 29 * S


@pytest.mark.parametrize("code", [ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.ACCESS_DENIED])
def test_retry_after_is_honoured_for_other_codes_too(code: ErrorCode) -> None:
    decision = exact().record_failure(BreakerState(), code, NOW, retry_after=2 * timedelta(hours=1))
    assert delay(decision) == 2 * timedelta(hours=1)


def test_retry_after_delays_a_probe() -> None:
    breaker = exact()
    decision = breaker.record_failure(
        open_state(breaker), ErrorCode.RATE_LIMITED, NOW, retry_after=20 * MIN
    )
    assert decision.outcome is Outcome.PROBE_SCHEDULED
    assert delay(decision) == 20 * MIN


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
