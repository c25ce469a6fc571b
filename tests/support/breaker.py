"""What the breaker policy's tests share: a fixed clock, the codes by schedule, a breaker
without jitter, and streaks of failures."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from service.domain.breaker import (
    BreakerPolicy,
    BreakerRules,
    BreakerState,
    Decision,
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
