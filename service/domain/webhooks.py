"""Webhooks as the domain sees them: endpoints, the events they are sent, the deliveries and
their attempts, the retry policy and the endpoints' safety brake. Pure values, no I/O.

An *endpoint* is a URL of a tenant's receiver with a filter of event types. Every event of the
tenant that the filter lets through becomes one *delivery* per enabled endpoint, written with
the event itself (the outbox). A delivery is attempted until the receiver answers 2xx, with
exponential backoff and jitter, for at most the retry horizon; then it is given up. An endpoint
whose every attempt has failed for `disable_after` is disabled (the brake, applied to receivers)
and stays so until someone enables it again.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

from service.domain.model import Event, Integration
from service.domain.status import allowed_actions
from service.domain.sync import SyncRun
from service.domain.taxonomy import IntegrationError


class EventType(enum.Enum):
    """What a webhook reports; the value is the `type` of the payload."""

    #: Every change of an integration that WatchStatus streams (status, sub-state, breaker,
    #: lateness), with the event behind it.
    STATUS_CHANGED = "integration.status_changed"
    #: A sync run ended: outcome, counts, error.
    SYNC_RUN_FINISHED = "sync_run.finished"
    #: A committed page changed records: ids and counts (the data is in the change feed).
    RECORDS_CHANGED = "records.changed"
    #: One of the tenant's endpoints was disabled because its deliveries kept failing.
    ENDPOINT_DISABLED = "webhook.endpoint_disabled"


class DeliveryState(enum.Enum):
    """Where a delivery is."""

    PENDING = "PENDING"  # not delivered yet; attempted again at next_attempt_at
    DELIVERED = "DELIVERED"  # a 2xx answer
    FAILED = "FAILED"  # given up after the retry horizon


#: Ids of each kind listed in a records.changed payload; more are counted, not listed.
MAX_RECORD_IDS = 1000
#: The longest overlap a secret rotation may ask for.
MAX_ROTATION_OVERLAP = timedelta(days=7)
#: The overlap of a rotation that does not say.
DEFAULT_ROTATION_OVERLAP = timedelta(hours=24)
#: Endpoints one tenant may have.
MAX_ENDPOINTS = 50
MAX_DESCRIPTION = 500


@dataclass(frozen=True)
class Endpoint:
    """A tenant's webhook receiver (its secret stays in storage, sealed)."""

    tenant_id: str
    id: UUID
    url: str
    created_at: datetime
    updated_at: datetime
    description: str = ""
    #: Empty: every type.
    event_types: frozenset[EventType] = frozenset()
    enabled: bool = True
    disabled_reason: str = ""
    disabled_at: datetime | None = None
    #: The first failed attempt since the last success (None: the last attempt worked).
    failing_since: datetime | None = None
    #: While a rotation's overlap lasts, the previous secret signs too, until this time.
    previous_secret_expires_at: datetime | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"{self.version}"'

    def wants(self, event_type: EventType) -> bool:
        return not self.event_types or event_type in self.event_types


@dataclass(frozen=True)
class Attempt:
    """One attempt of a delivery, as its log shows it."""

    number: int
    at: datetime
    #: The receiver's HTTP status; 0 when there was no answer.
    status_code: int
    latency: timedelta
    #: Why it failed; empty for a success.
    error: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.number,
            "at": self.at.isoformat(),
            "status": self.status_code,
            "latency_ms": round(self.latency.total_seconds() * 1000),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attempt:
        return cls(
            number=d["n"],
            at=datetime.fromisoformat(d["at"]),
            status_code=d["status"],
            latency=timedelta(milliseconds=d["latency_ms"]),
            error=d.get("error", ""),
        )


@dataclass(frozen=True)
class Delivery:
    """One event on its way to one endpoint."""

    tenant_id: str
    endpoint_id: UUID
    #: The webhook-id: the same on every attempt, so receivers deduplicate on it.
    event_id: UUID
    event_type: EventType
    integration_id: UUID | None
    #: See `body`: the integration's revision as of the event.
    revision: int
    payload: dict[str, Any]
    state: DeliveryState
    created_at: datetime
    next_attempt_at: datetime | None = None
    finished_at: datetime | None = None
    attempts: tuple[Attempt, ...] = ()

    def body(self) -> dict[str, Any]:
        """What is POSTed (Standard Webhooks' recommended shape): the type, when the event
        happened, and its data with the revision (a status change's own; for the other types
        the integration's as they happened), by which receivers order events."""
        return {
            "type": self.event_type.value,
            "timestamp": _iso(self.created_at),
            "data": {"revision": self.revision, **self.payload},
        }


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed delivery is attempted again, and when an endpoint is disabled."""

    initial: timedelta = timedelta(seconds=10)
    """The wait after the first failure; doubles with each one after it."""
    maximum: timedelta = timedelta(hours=6)
    """The longest wait between two attempts."""
    horizon: timedelta = timedelta(days=3)
    """How long after the event attempts go on; then the delivery is given up."""
    jitter: float = 0.2
    """Fraction (0-1) randomly taken off each wait, so a fleet of retries does not stampede."""
    disable_after: timedelta = timedelta(days=5)
    """An endpoint whose every attempt failed for this long is disabled."""

    def __post_init__(self) -> None:
        if not timedelta(0) < self.initial <= self.maximum:
            raise ValueError("webhook retry waits must satisfy 0 < initial <= maximum")
        if self.horizon <= timedelta(0) or self.disable_after <= timedelta(0):
            raise ValueError("webhook retry horizon and disable-after must be positive")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def next_attempt(
        self, failures: int, created_at: datetime, now: datetime, rng: random.Random
    ) -> datetime | None:
        """When to try again after `failures` failed attempts (>= 1); None: give up (the
        next attempt would fall past the horizon)."""
        wait = min(self.maximum, self.initial * 2 ** min(failures - 1, 40))
        wait *= 1 - self.jitter * rng.random()
        at = now + wait
        return at if at <= created_at + self.horizon else None

    def disables(self, failing_since: datetime, now: datetime) -> bool:
        """Whether a failure at `now`, in a streak that began at `failing_since`, disables
        the endpoint."""
        return now - failing_since >= self.disable_after


def disabled_reason(failing_since: datetime, now: datetime, last: Attempt) -> str:
    """Why an endpoint was disabled, in words for its owner."""
    days = (now - failing_since).total_seconds() / 86400
    span = f"{days:.1f} days" if days >= 1 else f"{(now - failing_since).total_seconds():.0f}s"
    cause = last.error or f"HTTP {last.status_code}"
    return (
        f"every delivery attempt failed for {span} (since {_iso(failing_since)}); the last "
        f"one: {cause}. Fix the receiver, then enable the webhook again (UpdateWebhook with "
        "enabled: true); deliveries still pending are retried at once"
    )


# -- payloads ------------------------------------------------------------------------------
# Each builds the `data` of one event type (the revision is added by Delivery.body). They
# carry facts a receiver acts on, never secrets: no credentials, no config values.


def error_payload(error: IntegrationError | None) -> dict[str, Any] | None:
    """A classified error with what it means and what to do (why a connection broke)."""
    if error is None:
        return None
    return {
        "code": error.code.value,
        "category": error.category.value,
        "message": error.message,
        "what_it_means": error.what_it_means,
        "solution": error.solution,
        "retry_after_seconds": error.retry_after.total_seconds() if error.retry_after else None,
        "support_reference": error.support_reference,
        "occurred_at": _iso(error.occurred_at),
    }


def integration_payload(i: Integration, now: datetime) -> dict[str, Any]:
    """An integration as of `now`, with the facts WatchStatus shows of it (the Integration
    message; its configuration left out, which may hold secrets): every field has its key
    here (the revision is the payload's own, beside it), under the proto's name or the `_at`
    form of a time, and derived facts (lateness, the
    push state shown, the breaker's phase, the allowed actions) come from the same domain
    functions as the API's. (The breaker's `threshold` is the integration's own override;
    None means the deployment's.)"""
    b = i.breaker
    push = i.push.shown()
    return {
        "id": str(i.id),
        "display_name": i.display_name,
        "connector_type": i.connector_type,
        "credentials": {
            "has_credentials": i.credentials_kind is not None,
            "kind": i.credentials_kind,
            "set_at": _iso(i.credentials_set_at),
        },
        "status": i.status.value,
        "sync_state": i.sync_state.value if i.sync_state else None,
        "last_error": error_payload(i.last_error),
        "breaker": {
            "state": b.phase,
            "open": b.open,
            "consecutive_failures": b.consecutive_failures,
            "threshold": b.threshold,
            "opened_at": _iso(b.opened_at),
            "next_attempt_at": _iso(b.next_attempt_at),
        },
        "sync_interval_seconds": i.sync_interval.total_seconds(),
        "last_synced_at": _iso(i.last_synced_at),
        "next_sync_at": _iso(i.next_sync_at),
        "record_count": i.record_count,
        "created_at": _iso(i.created_at),
        "updated_at": _iso(i.updated_at),
        "missing_config_fields": list(i.missing_config_fields),
        "allowed_actions": [a.value for a in allowed_actions(i.status)],
        "late": i.late(now),
        "push": {
            "state": push.state.value,
            "expires_at": _iso(push.expires_at),
            "reason": push.reason,
            "retry_at": _iso(push.retry_at),
        },
    }


def status_changed(event: Event) -> dict[str, Any]:
    """integration.status_changed: the change and the integration after it (None: deleted),
    as of the change (so `late` is whether it was late then)."""
    return {
        "integration_id": str(event.integration_id),
        "trigger": event.trigger,
        "from_status": event.from_status.value if event.from_status else None,
        "to_status": event.to_status.value if event.to_status else None,
        "reason": event.reason,
        "actor": event.actor,
        "error": error_payload(event.error),
        "occurred_at": _iso(event.occurred_at),
        "integration": (
            integration_payload(event.state, event.occurred_at) if event.state else None
        ),
        "deleted": event.to_status is None,
    }


def sync_run_finished(run: SyncRun) -> dict[str, Any]:
    """sync_run.finished, but for the counters (storage adds those from the row it ends)."""
    return {
        "id": str(run.id),
        "seq": run.seq,
        "trigger": run.trigger.value,
        "outcome": run.outcome.value,
        "started_at": _iso(run.started_at),
        "ended_at": _iso(run.ended_at),
        "error": error_payload(run.error),
    }


def endpoint_disabled(endpoint: Endpoint, reason: str, now: datetime) -> dict[str, Any]:
    """webhook.endpoint_disabled, sent to the tenant's other endpoints."""
    return {
        "endpoint_id": str(endpoint.id),
        "url": _without_query(endpoint.url),
        "reason": reason,
        "failing_since": _iso(endpoint.failing_since),
        "disabled_at": _iso(now),
    }


def _without_query(url: str) -> str:
    # A receiver's URL may carry a token in its query or user info; the other endpoints need
    # only to know which one it is.
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
