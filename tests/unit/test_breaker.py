"""The breaker policy: the per-code table, opening, backoff schedules, jitter and Retry-After."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from service.domain.breaker import (
    HANDLING,
    AttemptKind,
    BreakerPolicy,
    BreakerRules,
    BreakerState,
    Halt,
    Outcome,
)
from service.domain.taxonomy import ErrorCode
from tests.support.breaker import (
    COUNTING_CODES,
    MIN,
    NOW,
    FixedRandom,
    S,
    delay,
    exact,
    fail_times,
    open_state,
)

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
