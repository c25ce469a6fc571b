"""The breaker ("safety brake"): when to retry a failing integration, when to stop, when to probe.

Pure policy, no I/O: the engine passes the time in (`now`, timezone-aware) and owns a
`random.Random` for jitter, so every decision is reproducible in tests. The rules:

1. **Streak.** Every failure adds one to `consecutive_failures`; any success resets it to 0.
2. **Pace per error code** (the `HANDLING` table). FAST codes retry on exponential backoff
   (`backoff_initial` x `backoff_multiplier`^(streak-1), capped at `backoff_max`). SLOW codes
   (TOKEN_EXPIRED, ACCESS_DENIED) still count, but wait on the probe schedule instead: retrying
   in seconds cannot fix permissions, a person must act. NONE (INVALID_CREDENTIALS) disconnects:
   nothing is attempted until Reauthorize, the breaker stands aside.
3. **Opening.** The breaker opens when the streak reaches the threshold (default 5, per
   integration overridable). A code's `min_streak_to_open` raises that bar: SERVICE_UNAVAILABLE
   needs a streak of at least 2, so a lone 5xx or timeout never trips it, even at threshold 1.
4. **Open.** Regular syncs stop; only connection probes run, `probe_initial` x
   `probe_multiplier`^step capped at `probe_max`; each failed probe moves the next one further
   out. `slow_steps` counts the slow-scheduled attempts of the current streak, so a run of auth
   errors that opens the breaker continues its schedule instead of restarting at 1 min.
5. **Jitter** is subtractive: a delay `d` becomes uniform in [d x (1 - jitter), d]. jitter=1 is
   "full jitter", 0.5 "equal jitter"; a cap stays a true maximum.
6. **Retry-After** is a floor, for every code that is retried (RATE_LIMITED above all, but a 503
   may send one too): the next attempt is never before `now + retry_after`, jitter included.
7. **Closing.** A success (TestConnection, Sync, the test after Reauthorize) closes the breaker
   and resets everything; `Outcome.REACTIVATED` says it was open, i.e. the integration
   reactivated itself, which the engine records as an event. A *probe's* success only
   half-opens it (`trial`): the cheap check passing does not prove that the work that failed
   works, so a sync from where it left off runs next, and only its success closes the breaker.
   Should that sync fail, the breaker stays open and the probe schedule keeps growing: an
   integration whose probe passes but whose data cannot be synced never flaps between
   "reactivated" and "braked".
8. **People.** Pause freezes the breaker: nothing is scheduled, and outcomes reported while
   paused (a TestConnection on a paused integration only reports) change nothing. Resume and
   Reauthorize are a person's explicit retry: they close the breaker, reset the streak and ask
   for an attempt now (Resume: a sync from the cursor; Reauthorize: the verification test).
"""

from __future__ import annotations

import dataclasses
import enum
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from service.domain.taxonomy import ErrorCode


class Pace(enum.Enum):
    """How soon a failure of a given code is retried while the breaker is closed."""

    FAST = "FAST"  # exponential backoff: the cause may go away on its own
    SLOW = "SLOW"  # the probe schedule: a person must act, hammering cannot help
    NONE = "NONE"  # never retried automatically: disconnected until Reauthorize


@dataclass(frozen=True)
class Handling:
    """How one error code counts towards the breaker."""

    pace: Pace
    min_streak_to_open: int = 1
    """The breaker opens only when the streak is also at least this long."""


#: Every error code's handling. All codes count as failures; Retry-After applies to all.
HANDLING: dict[ErrorCode, Handling] = {
    ErrorCode.RESOURCE_NOT_FOUND: Handling(Pace.FAST),
    ErrorCode.TOKEN_EXPIRED: Handling(Pace.SLOW),
    ErrorCode.ACCESS_DENIED: Handling(Pace.SLOW),
    ErrorCode.RATE_LIMITED: Handling(Pace.FAST),
    ErrorCode.INVALID_CREDENTIALS: Handling(Pace.NONE),
    # Transient by nature (5xx, timeout): one alone must not auto-pause an integration.
    ErrorCode.SERVICE_UNAVAILABLE: Handling(Pace.FAST, min_streak_to_open=2),
    ErrorCode.INTERNAL: Handling(Pace.FAST),
}


@dataclass(frozen=True)
class BreakerPolicy:
    """The breaker's settings; the defaults are the deployment's unless overridden."""

    threshold: int = 5
    """Consecutive failures that open the breaker (overridable per integration)."""
    backoff_initial: timedelta = timedelta(seconds=30)
    """Delay before the first fast retry."""
    backoff_max: timedelta = timedelta(minutes=15)
    """The longest fast-retry delay."""
    backoff_multiplier: float = 2.0
    """Growth of the fast-retry delay per consecutive failure."""
    jitter: float = 0.2
    """Fraction (0..1) randomly taken off each delay: d becomes uniform in [d(1-jitter), d]."""
    probe_initial: timedelta = timedelta(minutes=1)
    """Delay before the first probe (and the first slow retry)."""
    probe_max: timedelta = timedelta(hours=1)
    """The longest delay between probes."""
    probe_multiplier: float = 2.0
    """Growth of the probe delay per failed probe or slow retry."""
    probe_timeout: timedelta = timedelta(seconds=30)
    """How long a probe may take before the engine counts it as failed."""

    def __post_init__(self) -> None:
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int):
            raise ValueError(f"threshold must be an integer, got {self.threshold!r}")
        if self.threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {self.threshold}")
        for name in ("backoff_initial", "probe_initial", "probe_timeout"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.backoff_max < self.backoff_initial:
            raise ValueError("backoff_max must not be shorter than backoff_initial")
        if self.probe_max < self.probe_initial:
            raise ValueError("probe_max must not be shorter than probe_initial")
        for name in ("backoff_multiplier", "probe_multiplier"):
            if not getattr(self, name) >= 1:  # `not >=` also rejects NaN
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def fast_delay(self, streak: int) -> timedelta:
        """The un-jittered fast-retry delay after `streak` consecutive failures (streak >= 1)."""
        return _grow(self.backoff_initial, self.backoff_multiplier, streak - 1, self.backoff_max)

    def slow_delay(self, steps: int) -> timedelta:
        """The un-jittered probe (or slow-retry) delay after `steps` earlier ones in the streak."""
        return _grow(self.probe_initial, self.probe_multiplier, steps, self.probe_max)

    def with_overrides(self, *, threshold: int | None = None) -> BreakerPolicy:
        """This policy with an integration's own settings applied (None keeps the default)."""
        if threshold is None:
            return self
        return dataclasses.replace(self, threshold=threshold)


class Halt(enum.Enum):
    """Why nothing at all is attempted."""

    PAUSED = "PAUSED"  # a person paused the integration
    DISCONNECTED = "DISCONNECTED"  # credentials rejected; only Reauthorize can help


class AttemptKind(enum.Enum):
    """What the engine should run next."""

    SYNC = "SYNC"
    """A full sync: at `next_attempt_at` if set, otherwise on the regular sync interval."""
    PROBE = "PROBE"
    """A cheap connection probe at `next_attempt_at` (the breaker is open)."""
    NONE = "NONE"
    """Nothing until a person acts (paused, or disconnected)."""


@dataclass(frozen=True)
class BreakerState:
    """The breaker of one integration, as stored on it and shown to people."""

    consecutive_failures: int = 0
    """Failures in a row since the last success."""
    open: bool = False
    """Whether the breaker is open: regular syncs stopped, only probes run."""
    opened_at: datetime | None = None
    """When it opened (set exactly when `open`)."""
    next_attempt_at: datetime | None = None
    """When to retry or probe; None: on the regular interval, or never when halted."""
    slow_steps: int = 0
    """Attempts of the current streak scheduled on the probe schedule; the next one waits longer."""
    halt: Halt | None = None
    """Set when nothing at all may be attempted."""
    trial: bool = False
    """Half-open: a probe passed, and the next attempt is the sync that must succeed before
    the breaker closes (rule 7)."""

    def __post_init__(self) -> None:
        if self.consecutive_failures < 0 or self.slow_steps < 0:
            raise ValueError("consecutive_failures and slow_steps must not be negative")
        if self.open != (self.opened_at is not None):
            raise ValueError("opened_at must be set exactly when the breaker is open")
        if self.open and self.consecutive_failures == 0:
            raise ValueError("an open breaker needs at least one failure")
        if self.halt is not None and self.next_attempt_at is not None:
            raise ValueError("a halted breaker schedules nothing")
        if self.open and self.halt is None and self.next_attempt_at is None:
            raise ValueError("an open breaker must have its next probe scheduled")
        if self.trial and not self.open:
            raise ValueError("only an open breaker can be on trial")
        for moment in (self.opened_at, self.next_attempt_at):
            if moment is not None:
                _require_aware(moment)

    @property
    def next_attempt_kind(self) -> AttemptKind:
        """What the engine should run next: nothing when halted, a probe when open (unless a
        probe passed: then the trial sync), else a sync."""
        if self.halt is not None:
            return AttemptKind.NONE
        return AttemptKind.PROBE if self.open and not self.trial else AttemptKind.SYNC

    def to_json(self) -> dict[str, Any]:
        """The JSON form stored in the database and in event snapshots."""
        return {
            "consecutive_failures": self.consecutive_failures,
            "open": self.open,
            "opened_at": _iso(self.opened_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "slow_steps": self.slow_steps,
            "halt": self.halt.value if self.halt else None,
            "trial": self.trial,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BreakerState:
        """The state back from `to_json`'s form."""
        return cls(
            consecutive_failures=data["consecutive_failures"],
            open=data["open"],
            opened_at=_from_iso(data["opened_at"]),
            next_attempt_at=_from_iso(data["next_attempt_at"]),
            slow_steps=data["slow_steps"],
            halt=Halt(data["halt"]) if data["halt"] else None,
            trial=data.get("trial", False),
        )


class Outcome(enum.Enum):
    """What a breaker decision did, for the engine's event log."""

    RETRY_SCHEDULED = "RETRY_SCHEDULED"  # failure counted, breaker closed, sync retried later
    BREAKER_OPENED = "BREAKER_OPENED"  # the threshold was reached: auto-paused, probing starts
    PROBE_SCHEDULED = "PROBE_SCHEDULED"  # failure while open: the next probe is further out
    PROBE_PASSED = "PROBE_PASSED"  # a probe worked while open: half-open, the trial sync is due
    TRIAL_FAILED = "TRIAL_FAILED"  # the trial sync failed: still open, the next probe further out
    DISCONNECTED = "DISCONNECTED"  # credentials rejected: nothing until Reauthorize
    CLOSED = "CLOSED"  # success while closed: streak reset
    REACTIVATED = "REACTIVATED"  # success while open: closed, the integration reactivated itself
    PAUSED = "PAUSED"  # a person paused: nothing scheduled, not even probes
    STILL_PAUSED = "STILL_PAUSED"  # reported while paused: nothing changed
    RESUMED = "RESUMED"  # a person resumed: closed, reset, a sync is due now
    REAUTHORIZED = "REAUTHORIZED"  # new credentials: closed, reset, the verification is due now


@dataclass(frozen=True)
class Decision:
    """The breaker's new state and what happened."""

    state: BreakerState
    outcome: Outcome

    @property
    def next_attempt_at(self) -> datetime | None:
        """When the next retry or probe is due (None: regular interval, or never when halted)."""
        return self.state.next_attempt_at

    @property
    def next_attempt_kind(self) -> AttemptKind:
        """What the engine should run next."""
        return self.state.next_attempt_kind


@dataclass(frozen=True)
class BreakerRules:
    """Applies a `BreakerPolicy` to a `BreakerState`; `rng` draws the jitter."""

    policy: BreakerPolicy = field(default_factory=BreakerPolicy)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def record_failure(
        self,
        state: BreakerState,
        code: ErrorCode,
        now: datetime,
        *,
        retry_after: timedelta | None = None,
    ) -> Decision:
        """Count a failed sync, test or probe and decide when (and how) to try next."""
        _require_aware(now)
        if state.halt is Halt.PAUSED:
            return Decision(state, Outcome.STILL_PAUSED)
        handling = HANDLING[code]
        streak = state.consecutive_failures + 1
        if handling.pace is Pace.NONE:
            disconnected = BreakerState(consecutive_failures=streak, halt=Halt.DISCONNECTED)
            return Decision(disconnected, Outcome.DISCONNECTED)

        threshold = max(self.policy.threshold, handling.min_streak_to_open)
        opening = not state.open and streak >= threshold
        slow_steps = state.slow_steps
        # Probes and auth retries share one growing schedule (rule 4 above): neither is helped
        # by trying again in seconds.
        if state.open or opening or handling.pace is Pace.SLOW:
            delay = self.policy.slow_delay(slow_steps)
            slow_steps += 1
        else:
            delay = self.policy.fast_delay(streak)
        next_at = now + self._jittered(delay)
        if retry_after is not None:
            next_at = max(next_at, now + retry_after)

        opened_at: datetime | None
        if opening:
            outcome, opened_at = Outcome.BREAKER_OPENED, now
        elif state.open:
            outcome = Outcome.TRIAL_FAILED if state.trial else Outcome.PROBE_SCHEDULED
            opened_at = state.opened_at
        else:
            outcome, opened_at = Outcome.RETRY_SCHEDULED, None
        new_state = BreakerState(
            consecutive_failures=streak,
            open=opened_at is not None,
            opened_at=opened_at,
            next_attempt_at=next_at,
            slow_steps=slow_steps,
        )
        return Decision(new_state, outcome)

    def record_success(self, state: BreakerState) -> Decision:
        """A sync or test worked: close the breaker and return to the regular interval."""
        if state.halt is Halt.PAUSED:
            return Decision(state, Outcome.STILL_PAUSED)
        return Decision(BreakerState(), Outcome.REACTIVATED if state.open else Outcome.CLOSED)

    def record_probe_success(self, state: BreakerState, now: datetime) -> Decision:
        """A probe worked. While the breaker is open, that only half-opens it (rule 7): the
        trial sync is due now, and the streak stays until it succeeds."""
        _require_aware(now)
        if not state.open or state.halt is not None:
            return self.record_success(state)
        trial = dataclasses.replace(state, trial=True, next_attempt_at=now)
        return Decision(trial, Outcome.PROBE_PASSED)

    def on_pause(self, state: BreakerState) -> Decision:
        """A person paused: schedule nothing, not even probes; the streak stays visible."""
        paused = dataclasses.replace(state, next_attempt_at=None, halt=Halt.PAUSED)
        return Decision(paused, Outcome.PAUSED)

    def on_resume(self, state: BreakerState, now: datetime) -> Decision:
        """A person resumed: their explicit retry closes the breaker, whatever its state, and a
        sync is due now."""
        _require_aware(now)
        return Decision(BreakerState(next_attempt_at=now), Outcome.RESUMED)

    def on_reauthorize(self, state: BreakerState, now: datetime) -> Decision:
        """New credentials: close the breaker and verify them now (a paused one stays paused)."""
        _require_aware(now)
        if state.halt is Halt.PAUSED:
            return Decision(state, Outcome.STILL_PAUSED)
        return Decision(BreakerState(next_attempt_at=now), Outcome.REAUTHORIZED)

    def _jittered(self, delay: timedelta) -> timedelta:
        return delay - delay * (self.policy.jitter * self.rng.random())


def _grow(initial: timedelta, multiplier: float, steps: int, cap: timedelta) -> timedelta:
    """initial x multiplier^steps, capped, without overflowing for a long streak."""
    delay = initial
    for _ in range(steps):
        grown = delay * multiplier
        if grown >= cap:
            return cap
        if grown == delay:  # multiplier 1 (or too close to it to matter at microseconds)
            break
        delay = grown
    return min(delay, cap)


def _require_aware(moment: datetime) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetimes must be timezone-aware, got {moment!r}")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None
