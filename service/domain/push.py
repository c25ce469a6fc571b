"""Push instead of polling: an integration's push state and the rules that move it. Pure, no I/O.

A provider that can notify us (Google Calendar's `events.watch`) gets a *channel*: the provider
POSTs a bodiless notification to us when the source changes, and the notification only means
"look now" — the incremental sync does the work. Polling stays as the safety net: while the
channel is healthy the integration polls at a long interval (`PushPolicy.poll_interval`), and
when push fails it goes back to its own interval and push is retried later.

`Push` is what an integration carries (and the API shows): OFF, ACTIVE with the channel's
expiration, or UNAVAILABLE with the reason. Its other fields are bookkeeping:
- `check_at` is when the channel reconciler (service.engine.push) next looks at the integration:
  at once after a change that matters to its channel (`affects`), before the channel expires,
  or when push is to be retried;
- `pending` says a notification (or a newly opened channel) has not yet been covered by a
  finished sync, and `notified_at` is when the latest notification came, so a sync can tell
  whether one arrived while it ran (`after_sync`).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import UUID

from service.domain.status import Status

if TYPE_CHECKING:
    from service.domain.model import Integration


class PushState(enum.Enum):
    """Whether the provider tells us about changes."""

    OFF = "OFF"  # no channel: not configured here, or not wanted now (paused, braked, …)
    ACTIVE = "ACTIVE"  # a channel is open; polling is only the safety net
    UNAVAILABLE = "UNAVAILABLE"  # push failed (see the reason); polling, push retried later


@dataclass(frozen=True)
class Push:
    """The push state of one integration (see the module docstring)."""

    state: PushState = PushState.OFF
    #: UNAVAILABLE: why, in words.
    reason: str = ""
    #: ACTIVE: when the current channel expires (it is renewed before).
    expires_at: datetime | None = None
    #: UNAVAILABLE: when push is tried again.
    retry_at: datetime | None = None
    #: When the channel reconciler next looks at the integration; None: nothing to do.
    check_at: datetime | None = None
    #: A notification (or a channel opening) not yet covered by a finished sync.
    pending: bool = False
    #: When the latest notification that asked for a sync arrived.
    notified_at: datetime | None = None
    #: ACTIVE: the safety net's polling interval (the integration's own when that is longer).
    poll_interval: timedelta | None = None

    def replace(self, **changes: Any) -> Push:
        return dataclasses.replace(self, **changes)

    def shown(self) -> Push:
        """What the API, WatchStatus and webhooks show: the state with the facts that belong
        to it (the expiration while ACTIVE, the reason and retry time while UNAVAILABLE),
        none of the bookkeeping."""
        active = self.state is PushState.ACTIVE
        unavailable = self.state is PushState.UNAVAILABLE
        return Push(
            state=self.state,
            reason=self.reason if unavailable else "",
            expires_at=self.expires_at if active else None,
            retry_at=self.retry_at if unavailable else None,
        )

    def due(self, now: datetime) -> Push:
        """The reconciler should look at once (or sooner than it planned)."""
        return self.replace(check_at=min(self.check_at or now, now))

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "reason": self.reason,
            "expires_at": _iso(self.expires_at),
            "retry_at": _iso(self.retry_at),
            "check_at": _iso(self.check_at),
            "pending": self.pending,
            "notified_at": _iso(self.notified_at),
            "poll_interval": self.poll_interval.total_seconds() if self.poll_interval else None,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Push:
        poll = data.get("poll_interval")
        return cls(
            state=PushState(data.get("state") or "OFF"),
            reason=data.get("reason") or "",
            expires_at=_dt(data.get("expires_at")),
            retry_at=_dt(data.get("retry_at")),
            check_at=_dt(data.get("check_at")),
            pending=bool(data.get("pending")),
            notified_at=_dt(data.get("notified_at")),
            poll_interval=timedelta(seconds=poll) if poll else None,
        )


@dataclass(frozen=True)
class PushPolicy:
    """The deployment's push settings."""

    #: Channels are opened (push is on) only when the deployment has a callback address the
    #: provider may call; None: push is off here, and the reason it is.
    address: str | None = None
    #: Why push cannot work here though configured (e.g. the address is not HTTPS); push is
    #: then UNAVAILABLE with this reason instead of trying.
    refusal: str = ""
    #: How long a channel is asked to live.
    ttl: timedelta = timedelta(days=7)
    #: A channel is renewed this long before it expires.
    renew_before: timedelta = timedelta(hours=1)
    #: The safety net's polling interval while a channel is healthy.
    poll_interval: timedelta = timedelta(hours=6)
    #: Notifications within this window after the first make one sync.
    coalesce: timedelta = timedelta(seconds=1)
    #: After push failed, how long until it is tried again.
    retry_after: timedelta = timedelta(hours=1)
    #: The connector types whose providers can push (None: any).
    types: frozenset[str] | None = None

    @property
    def configured(self) -> bool:
        return self.address is not None or bool(self.refusal)

    def covers(self, connector_type: str) -> bool:
        """Whether integrations of `connector_type` can have a channel here."""
        return self.configured and (self.types is None or connector_type in self.types)


@dataclass(frozen=True)
class Channel:
    """One channel we opened at a provider (its secret token is kept apart, sealed)."""

    tenant_id: str
    #: Our id of the channel (at most 64 characters), echoed in every notification.
    channel_id: str
    integration_id: UUID
    connector_type: str
    #: The provider's id of the watched resource; channels.stop needs it.
    resource_id: str
    #: The configuration and credentials it was opened with: it is replaced when they change.
    config: dict[str, Any]
    credentials_set_at: datetime | None
    opened_at: datetime
    expires_at: datetime
    #: Set once it must go: when the reconciler next tries to stop it.
    stop_at: datetime | None = None

    @property
    def retired(self) -> bool:
        return self.stop_at is not None

    def belongs_to(self, integration: Integration) -> bool:
        """Whether it watches what the integration is configured for, with its credentials."""
        return (
            self.config == integration.config
            and self.credentials_set_at == integration.credentials_set_at
        )


def wants_channel(integration: Integration) -> bool:
    """Whether the integration should have a channel now: it syncs on its own (ACTIVE or
    ERROR without the safety brake) and has synced at least once, so a notification has a
    cursor to continue from. Whether its connector can push is the engine's to say."""
    return (
        integration.status in (Status.ACTIVE, Status.ERROR)
        and not integration.breaker.open
        and integration.last_synced_at is not None
    )


def affects(before: Integration, after: Integration) -> bool:
    """Whether a change may change what channel the integration should have: its status, its
    configuration or credentials (a channel belongs to both), or the safety brake. (A first
    successful sync with the configuration it has now is the other: see `after_sync`.)"""
    return (
        before.status is not after.status
        or before.config != after.config
        or before.credentials_set_at != after.credentials_set_at
        or before.breaker.open != after.breaker.open
    )


@dataclass(frozen=True)
class AfterSync:
    """What a successful sync does to push: the integration's new push state and next sync,
    and a sentence for the sync's event when push is reported failed."""

    push: Push
    next_sync_at: datetime | None
    note: str = ""


def after_sync(
    current: Integration,
    started: Integration,
    *,
    scheduled: bool,
    changes: int,
    next_sync_at: datetime | None,
    now: datetime,
    policy: PushPolicy,
) -> AfterSync:
    """A sync of `current` (as it was when the run started: `started`) succeeded, found
    `changes` records to write or delete, and its verdict schedules `next_sync_at`.

    - A notification that came while it ran may announce a change the run did not see: the
      next sync is due at once.
    - Without a channel, where push is configured, the reconciler looks at once: this may be
      the first sync of its configuration, after which it should have one.
    - A scheduled sync (the safety net) that found changes no notification announced while a
      channel was open means push missed them: push is reported failed, the integration goes
      back to its own interval, and push is retried later.
    """
    push = current.push
    during = push.notified_at != started.push.notified_at
    push = push.replace(pending=during)
    if push.state is PushState.OFF and policy.covers(current.connector_type):
        # Not for a type that cannot push: the mark would be one more write of the row per
        # sync, for the reconciler only to clear it.
        push = push.due(now)
    due = min(next_sync_at, now) if during and next_sync_at else next_sync_at
    missed = (
        scheduled
        and changes > 0
        and not started.push.pending
        and started.push.state is PushState.ACTIVE
        and push.state is PushState.ACTIVE
    )
    if not missed:
        return AfterSync(push, due)
    retry = now + policy.retry_after
    reason = (
        f"a safety-net poll found {changes} change{'s' if changes != 1 else ''} that no "
        "notification announced"
    )
    failed = push.replace(
        state=PushState.UNAVAILABLE,
        reason=reason,
        expires_at=None,
        poll_interval=None,
        retry_at=retry,
        check_at=now,
    )
    interval = current.sync_interval
    if due is not None and not during:
        due = min(due, now + interval)
    note = (
        f"; push reported failed: {reason}, so it polls every {_human(interval)} again "
        f"and push is retried at {retry.isoformat(timespec='seconds')}"
    )
    return AfterSync(failed, due, note)


def _human(interval: timedelta) -> str:
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def with_push(integration: Integration, push: Push, *, due_now: bool, now: datetime) -> Integration:
    """`integration` with `push`, and its next regular sync by its polling interval: a sync
    now after a gap in push; back to its own interval when push is no longer ACTIVE."""
    changed = integration.replace(push=push)
    regular = (
        changed.status is Status.ACTIVE
        and not changed.breaker.consecutive_failures
        and changed.breaker.next_attempt_at is None
        and changed.next_sync_at is not None
    )
    if not regular:
        return changed
    assert changed.next_sync_at is not None
    if due_now:
        return changed.replace(next_sync_at=min(changed.next_sync_at, now))
    if push.state is not PushState.ACTIVE:
        since = changed.last_synced_at or now
        return changed.replace(
            next_sync_at=min(changed.next_sync_at, max(now, since + changed.sync_interval))
        )
    return changed


def off_reason(integration: Integration) -> str:
    """Why an integration has no push channel now (its event's reason)."""
    if integration.status not in (Status.ACTIVE, Status.ERROR):
        return f"push channel stopped: the integration is {integration.status.value}"
    if integration.breaker.open:
        return "push channel stopped: the safety brake is on"
    return "push is off"


def human_interval(interval: timedelta) -> str:
    """`interval` as people write it in an event's reason: 6h, 90m, 30s."""
    seconds = interval.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
