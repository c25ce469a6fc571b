"""When an integration next acts on its own, and what an attempt's outcome does to it.

The breaker (`breaker.py`) decides when to retry and when to stop; this module applies its
decisions to an integration: the lifecycle trigger to record (FAILED, BREAKER_OPENED,
REACTIVATED…), the new breaker state, `next_sync_at` and the words of the event. It also
says when a healthy integration syncs next (its interval, jittered so a fleet does not
stampede) and what kind of sync run a due integration gets. Pure: time and randomness come in.

`next_sync_at` is the one time the scheduler looks at: when the service next acts on its own
— the next regular sync, a retry, or, while the breaker is open, the next probe. None when
nothing is scheduled (paused, disconnected, not set up). A retry's or probe's time replaces
the regular interval; a success puts the regular interval back.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from datetime import datetime

from service.domain.breaker import BreakerPolicy, BreakerRules, BreakerState, Outcome
from service.domain.model import Breaker, Integration
from service.domain.status import Status, Trigger, transition
from service.domain.sync import SyncTrigger
from service.domain.taxonomy import FAILURE_TRIGGERS, IntegrationError


class Attempt(enum.Enum):
    """What produced an outcome."""

    SYNC = "sync"
    TEST = "connection test"
    PROBE = "probe"


@dataclass(frozen=True)
class Verdict:
    """What to record after an attempt: the trigger, the event's reason, and the breaker and
    schedule the integration gets."""

    trigger: Trigger
    reason: str
    breaker: Breaker
    next_sync_at: datetime | None
    #: The breaker's outcome (None when the breaker had no say, e.g. back to CONFIGURE).
    outcome: Outcome | None

    def apply(self, integration: Integration) -> Integration:
        """`integration` with the verdict's breaker and schedule."""
        return integration.replace(breaker=self.breaker, next_sync_at=self.next_sync_at)


@dataclass(frozen=True)
class Schedule:
    """The deployment's breaker policy and the randomness of its jitter."""

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def threshold(self, integration: Integration) -> int:
        """Failures in a row that open this integration's breaker."""
        return self._policy(integration).threshold

    def regular(self, integration: Integration, now: datetime) -> datetime:
        """The next regular sync after one that ended at `now`: the polling interval (the
        sync interval, or the safety net's while a push channel is open), minus up to the
        policy's jitter (never later, so jitter cannot make an integration late)."""
        interval = integration.interval
        return now + interval - interval * (self.policy.jitter * self.rng.random())

    def failed(
        self, integration: Integration, error: IntegrationError, now: datetime, *, what: str
    ) -> Verdict:
        """A sync, test or probe (`what`, e.g. "sync run #3") failed with `error`."""
        said = f"{what} failed: {error.message}"
        base = FAILURE_TRIGGERS[error.code]
        if transition(integration.status, base) is Status.CONFIGURE:
            # The first verification rejected the resource: only a person's new configuration
            # helps, nothing is retried, and that configuration starts a streak of its own.
            return Verdict(base, said, integration.breaker.with_state(BreakerState()), None, None)
        rules = self._rules(integration)
        decision = rules.record_failure(
            integration.breaker.state, error.code, now, retry_after=error.retry_after
        )
        state = decision.state
        trigger = Trigger.BREAKER_OPENED if decision.outcome is Outcome.BREAKER_OPENED else base
        return Verdict(
            trigger,
            _failure_reason(said, decision.outcome, state, rules.policy.threshold),
            integration.breaker.with_state(state),
            state.next_attempt_at,
            decision.outcome,
        )

    def succeeded(
        self, integration: Integration, now: datetime, *, what: str, attempt: Attempt
    ) -> Verdict:
        """A sync, test or probe (`what`, e.g. "probe succeeded in 0.12s") worked."""
        rules = self._rules(integration)
        state = integration.breaker.state
        if attempt is Attempt.PROBE and state.open:
            # A probe is cheaper than the work that failed: it half-opens the brake, and the
            # trial sync it makes due now decides (see breaker rule 7).
            trial = rules.record_probe_success(state, now)
            return Verdict(
                Trigger.PROBE_SUCCEEDED,
                f"{what}: the connection answers again, so a sync from where it left off runs "
                "now; the safety brake is released once that sync succeeds",
                integration.breaker.with_state(trial.state),
                now,
                trial.outcome,
            )
        decision = rules.record_success(state)
        reactivated = decision.outcome is Outcome.REACTIVATED
        trigger, reason = Trigger.SUCCEEDED, what
        due: datetime | None
        if reactivated:
            trigger = Trigger.REACTIVATED
            reason = (
                f"{what}: the connection works again, so the safety brake is released and "
                "the integration reactivated itself"
            )
        if attempt is Attempt.SYNC:
            state, due = BreakerState(), self.regular(integration, now)
        elif reactivated:
            # Back to ACTIVE with stale data: a sync from the stored cursor is due at once,
            # and the breaker's pending attempt marks it as the reactivation's.
            state, due = BreakerState(next_attempt_at=now), now
            reason += "; syncing from where it left off"
        elif integration.status is not Status.ACTIVE:
            state, due = decision.state, now  # verified (or recovered): sync at once
        else:
            state, due = decision.state, integration.next_sync_at
        return Verdict(
            trigger, reason, integration.breaker.with_state(state), due, decision.outcome
        )

    def _policy(self, integration: Integration) -> BreakerPolicy:
        """The deployment's policy with the integration's own settings: the one place an
        integration's threshold meets the default."""
        return self.policy.with_overrides(threshold=integration.breaker.threshold)

    def _rules(self, integration: Integration) -> BreakerRules:
        return BreakerRules(self._policy(integration), self.rng)


#: Statuses a sync may write in; any other means a person stopped it (Pause, Configure…).
SYNCABLE = frozenset({Status.ACTIVE, Status.ERROR})


def probing(integration: Integration) -> bool:
    """Whether the integration is waiting on probes: in ERROR with its breaker open."""
    state = integration.breaker.state
    return (
        integration.status is Status.ERROR and state.open and state.halt is None and not state.trial
    )


def paused(breaker: Breaker) -> Breaker:
    """A person paused: nothing is attempted, not even probes; the streak stays visible."""
    return breaker.with_state(BreakerRules().on_pause(breaker.state).state)


def resumed(breaker: Breaker, now: datetime) -> Breaker:
    """A person resumed: their explicit retry closes the breaker and a sync is due now."""
    return breaker.with_state(BreakerRules().on_resume(breaker.state, now).state)


def reset(breaker: Breaker) -> Breaker:
    """A new configuration or new credentials: whatever failed before says nothing about
    them, so the streak starts afresh (the threshold stays)."""
    return breaker.with_state(BreakerState())


def sync_trigger(integration: Integration) -> SyncTrigger:
    """What kind of run a due integration's scheduled sync is: a retry after failures, the
    first sync after the breaker closed (or a Resume), or a regular one."""
    state = integration.breaker.state
    if state.trial:
        return SyncTrigger.REACTIVATION
    if state.consecutive_failures:
        return SyncTrigger.RETRY
    if state.next_attempt_at is not None:
        return SyncTrigger.REACTIVATION
    return SyncTrigger.SCHEDULED


def _failure_reason(said: str, outcome: Outcome, state: BreakerState, threshold: int) -> str:
    at = _when(state.next_attempt_at)
    streak = state.consecutive_failures
    if outcome is Outcome.RETRY_SCHEDULED:
        return (
            f"{said}; failure {streak} in a row (the safety brake stops at {threshold}), "
            f"next attempt at {at}"
        )
    if outcome is Outcome.BREAKER_OPENED:
        return (
            f"{said}; the safety brake is on after {streak} failures in a row: regular "
            f"syncs stop and only connection probes run until one succeeds, the next at {at}"
        )
    if outcome is Outcome.PROBE_SCHEDULED:
        return f"{said}; the safety brake stays on, next probe at {at}"
    if outcome is Outcome.TRIAL_FAILED:
        return (
            f"{said}; the probe had passed but the sync still fails, so the safety brake stays "
            f"on, next probe at {at}"
        )
    if outcome is Outcome.DISCONNECTED:
        return f"{said}; the credentials no longer work, so nothing is attempted until Reauthorize"
    return said


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "no time"
