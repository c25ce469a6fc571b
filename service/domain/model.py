"""The values the service works with: an integration and an entry of its history.

Frozen dataclasses, no I/O. Their JSON forms (`to_json` / `from_json`) are what the event log
keeps as the integration's full state at each revision.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from service.domain.breaker import BreakerState, Halt
from service.domain.push import Push, PushState
from service.domain.status import Status, SyncState
from service.domain.taxonomy import IntegrationError


@dataclass(frozen=True)
class Breaker:
    """The safety brake as stored on an integration: the breaker policy's state (see
    `service.domain.breaker`) and the integration's own threshold, if it has one."""

    state: BreakerState = field(default_factory=BreakerState)
    #: Per-integration override of the deployment's threshold; None uses the default.
    threshold: int | None = None

    @property
    def consecutive_failures(self) -> int:
        return self.state.consecutive_failures

    @property
    def open(self) -> bool:
        return self.state.open

    @property
    def opened_at(self) -> datetime | None:
        return self.state.opened_at

    @property
    def next_attempt_at(self) -> datetime | None:
        """When the next retry or probe runs; None: on the regular interval (or never)."""
        return self.state.next_attempt_at

    @property
    def halt(self) -> Halt | None:
        return self.state.halt

    @property
    def phase(self) -> str:
        """CLOSED, OPEN, or HALF_OPEN (a probe passed: the next sync decides), as shown."""
        if self.state.trial:
            return "HALF_OPEN"
        return "OPEN" if self.state.open else "CLOSED"

    def with_state(self, state: BreakerState) -> Breaker:
        """The same breaker (and threshold) in `state`."""
        return dataclasses.replace(self, state=state)

    def to_json(self) -> dict[str, Any]:
        return {**self.state.to_json(), "threshold": self.threshold}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Breaker:
        """Tolerates snapshots written before slow_steps and halt existed."""
        opened_at = _dt(data.get("opened_at"))
        next_at = _dt(data.get("next_attempt_at"))
        halt = Halt(data["halt"]) if data.get("halt") else None
        state = BreakerState(
            consecutive_failures=data.get("consecutive_failures", 0),
            open=opened_at is not None,
            opened_at=opened_at,
            next_attempt_at=None if halt else next_at,
            slow_steps=data.get("slow_steps", 0),
            halt=halt,
            trial=data.get("trial", False) and opened_at is not None,
        )
        return cls(state=state, threshold=data.get("threshold"))


#: Statuses in which an integration syncs on its own, and so can be late.
SCHEDULED_STATUSES = frozenset({Status.ACTIVE, Status.ERROR})


@dataclass(frozen=True)
class Integration:
    """One connected source, as the domain sees it (credentials live elsewhere, sealed)."""

    tenant_id: str
    id: UUID
    display_name: str
    connector_type: str
    status: Status
    revision: int
    created_at: datetime
    updated_at: datetime
    sync_interval: timedelta
    config: dict[str, Any] = field(default_factory=dict)
    missing_config_fields: tuple[str, ...] = ()
    credentials_kind: str | None = None
    credentials_set_at: datetime | None = None
    sync_state: SyncState | None = None
    last_error: IntegrationError | None = None
    breaker: Breaker = Breaker()
    last_synced_at: datetime | None = None
    next_sync_at: datetime | None = None
    record_count: int = 0
    #: Whether the provider notifies us of changes (push), and its bookkeeping.
    push: Push = field(default_factory=Push)

    @property
    def etag(self) -> str:
        """Opaque version tag; changes with every revision."""
        return f'"{self.revision}"'

    @property
    def config_complete(self) -> bool:
        return bool(self.config) and not self.missing_config_fields

    @property
    def interval(self) -> timedelta:
        """How often it polls: its sync interval, stretched to the safety net's interval
        while a push channel is open (never shortened)."""
        stretched = self.push.poll_interval if self.push.state is PushState.ACTIVE else None
        return max(self.sync_interval, stretched) if stretched else self.sync_interval

    @property
    def late_at(self) -> datetime | None:
        """When it becomes late unless a sync succeeds first: twice its polling interval
        after the last successful sync (or its creation). None where lateness does not apply
        (not ACTIVE or ERROR: nobody expects a paused or disconnected integration to sync)."""
        if self.status not in SCHEDULED_STATUSES:
            return None
        return (self.last_synced_at or self.created_at) + 2 * self.interval

    def late(self, now: datetime) -> bool:
        """Not synced successfully within twice its interval (only meaningful once active)."""
        late_at = self.late_at
        return late_at is not None and now > late_at

    def replace(self, **changes: Any) -> Integration:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        """The full state as JSON (kept in the event log)."""
        return {
            "tenant_id": self.tenant_id,
            "id": str(self.id),
            "display_name": self.display_name,
            "connector_type": self.connector_type,
            "status": self.status.value,
            "revision": self.revision,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "sync_interval": self.sync_interval.total_seconds(),
            "config": self.config,
            "missing_config_fields": list(self.missing_config_fields),
            "credentials_kind": self.credentials_kind,
            "credentials_set_at": _iso(self.credentials_set_at),
            "sync_state": self.sync_state.value if self.sync_state else None,
            "last_error": self.last_error.to_json() if self.last_error else None,
            "breaker": self.breaker.to_json(),
            "last_synced_at": _iso(self.last_synced_at),
            "next_sync_at": _iso(self.next_sync_at),
            "record_count": self.record_count,
            "push": self.push.to_json(),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Integration:
        return cls(
            tenant_id=d["tenant_id"],
            id=UUID(d["id"]),
            display_name=d["display_name"],
            connector_type=d["connector_type"],
            status=Status(d["status"]),
            revision=d["revision"],
            created_at=datetime.fromisoformat(d["created_at"]),
            updated_at=datetime.fromisoformat(d["updated_at"]),
            sync_interval=timedelta(seconds=d["sync_interval"]),
            config=d.get("config") or {},
            missing_config_fields=tuple(d.get("missing_config_fields") or ()),
            credentials_kind=d.get("credentials_kind"),
            credentials_set_at=_dt(d.get("credentials_set_at")),
            sync_state=SyncState(d["sync_state"]) if d.get("sync_state") else None,
            last_error=IntegrationError.from_json(d["last_error"]) if d.get("last_error") else None,
            breaker=Breaker.from_json(d.get("breaker") or {}),
            last_synced_at=_dt(d.get("last_synced_at")),
            next_sync_at=_dt(d.get("next_sync_at")),
            record_count=d.get("record_count", 0),
            push=Push.from_json(d["push"]) if d.get("push") else Push(),
        )


@dataclass(frozen=True)
class Event:
    """One entry of an integration's history: a change of status (or of its settings)."""

    tenant_id: str
    revision: int
    integration_id: UUID
    trigger: str
    from_status: Status | None
    to_status: Status | None
    reason: str
    actor: str
    occurred_at: datetime
    error: IntegrationError | None = None
    #: The integration's full state after the change; None for a deletion.
    state: Integration | None = None
    #: The integration's connector type (what a deletion's filter can still be told).
    connector_type: str | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass(frozen=True)
class TestOutcome:
    """The result of a connection test: it works, or the classified reason it does not."""

    __test__ = False  # not a pytest test class, despite the name

    ok: bool
    duration: timedelta
    error: IntegrationError | None = None
    #: A digest of the provider account the credentials turned out to belong to, when the
    #: test found it out (new credentials whose connector can tell); None otherwise.
    account: str | None = None
