"""Sync runs and synced records as the domain sees them. Pure values, no I/O.

A *sync run* is one pass of pulling pages from the provider: it starts RUNNING and ends
SUCCEEDED, FAILED (with the classified error) or CANCELLED (Pause, Delete, shutdown, or a lost
lease); pages it committed before it ended are kept. A *record* is one item of synced data,
keyed by the provider's own identifier.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from service.domain.taxonomy import IntegrationError


class SyncTrigger(enum.Enum):
    """What started a sync run."""

    MANUAL = "MANUAL"  # the Sync RPC
    SCHEDULED = "SCHEDULED"  # the background schedule
    RETRY = "RETRY"  # a retry after a failure
    REACTIVATION = "REACTIVATION"  # the breaker closed, a Resume or a Reauthorize


class SyncOutcome(enum.Enum):
    """How a sync run ended, or RUNNING."""

    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


@dataclass(frozen=True)
class SyncRun:
    """One sync of an integration: when, how it ended, how much it moved."""

    tenant_id: str
    integration_id: UUID
    id: UUID
    #: 1, 2, 3… per integration, so "newest first" is exact even within one clock tick.
    seq: int
    trigger: SyncTrigger
    outcome: SyncOutcome
    started_at: datetime
    ended_at: datetime | None = None
    pages: int = 0
    records_upserted: int = 0
    records_deleted: int = 0
    #: It listed everything from scratch (first sync, or the provider asked to start over).
    full_resync: bool = False
    error: IntegrationError | None = None
    #: Why it was cancelled (shown as the API's `reason`).
    note: str = ""
    #: Until when the runner owns it; an expired lease on a RUNNING run means its runner died.
    lease_expires_at: datetime | None = None
    #: The integration's lease version (fencing token) the run was started with: its writes
    #: count only while the integration still has this version.
    lease_version: int = 0
    #: The worker (process) that runs it, for operators.
    worker: str = ""
    #: Records skipped so that the others could be stored (see the proto's SyncRun).
    records_rejected: int = 0
    #: One rejected record and why.
    rejected_example: str = ""

    @property
    def running(self) -> bool:
        return self.outcome is SyncOutcome.RUNNING


@dataclass(frozen=True)
class StoredRecord:
    """One synced record: the provider's id, its fields, and when this service last wrote it."""

    id: str
    data: dict[str, Any]
    updated_at: datetime
    #: Its change number: the integration's change that wrote this version (see RecordChange).
    seq: int = 0


@dataclass(frozen=True)
class RecordChange:
    """One entry of an integration's change feed: a record as it is now (an upsert) or its
    tombstone (a deletion). Change numbers grow per integration in commit order; the feed holds
    each record once, at its latest change, so it is compacted per record."""

    seq: int
    record_id: str
    #: The record's fields; None when it was deleted.
    data: dict[str, Any] | None
    #: When the change was written (the record's update, or its deletion).
    changed_at: datetime

    @property
    def deleted(self) -> bool:
        return self.data is None


@dataclass(frozen=True)
class RecordsPage:
    """A page of ListRecords: live records as of change number `snapshot`."""

    records: list[StoredRecord]
    #: The change number the listing is exact at: the feed continues after it.
    snapshot: int


@dataclass(frozen=True)
class FeedPosition:
    """Where a consumer is in an integration's change feed (what its cursor holds).

    `after` is the last change number it has seen. `floor` is the change number its copy is
    known to be complete at: the integration's last number when the copy began (a listing's
    snapshot, or the head at the first read from the start), and `after` once it is past
    that. A tombstone at or below `floor` concerns records the consumer never held (they were
    deleted before its copy began, or it has seen the tombstone), so purging it is harmless;
    only a purge above `floor` may have taken a deletion it still needs.
    """

    after: int
    floor: int

    def moved_to(self, after: int) -> FeedPosition:
        return FeedPosition(after, max(self.floor, after))


@dataclass(frozen=True)
class ChangesPage:
    """A page of the change feed, and what bounds it."""

    changes: list[RecordChange]
    #: The integration's last change number when the page was read.
    head: int
    #: Tombstones up to this number were purged: a cursor below it may have missed one.
    purged_through: int
