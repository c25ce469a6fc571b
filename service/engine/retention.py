"""History retention: events older than the retention window are compacted away.

What is kept: every event younger than the window, and the latest event of each integration
that still exists, however old (it says why the integration is in its current status, which
ListEvents should always be able to show). What goes: everything else older than the window,
including old deletion tombstones. Each tenant's watermark (`history_compaction`) records
the highest revision deleted, so WatchStatus can refuse to resume from before it
(REVISION_COMPACTED) instead of silently skipping changes.

Every replica runs the job; running it twice at once is harmless (the second finds nothing
left to delete), so no coordination is needed.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import structlog

from service.background import cancel_and_wait
from service.clock import Clock, utc_now
from service.storage import watch as store
from service.storage.database import Database

log = structlog.get_logger(__name__)


class HistoryRetention:
    """Deletes history older than `window` and sync runs older than `runs_window`, every
    `interval` (in batches per tenant)."""

    def __init__(
        self,
        db: Database,
        window: timedelta,
        *,
        runs_window: timedelta = timedelta(days=30),
        clock: Clock = utc_now,
        interval: timedelta | None = None,
        batch: int = 5000,
    ) -> None:
        self.db = db
        self.window = window
        self.runs_window = runs_window
        self.clock = clock
        # Often enough that history never outlives the window by much, rarely enough to cost
        # nothing: a tenth of the window, between a second and an hour.
        self.interval = interval or min(timedelta(hours=1), max(timedelta(seconds=1), window / 10))
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="history-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def compact(self) -> int:
        """Compact every tenant's history now; returns how many events were deleted."""
        now = self.clock()
        cutoff = now - self.window
        total = 0
        for tenant in await store.tenants_with_history(self.db):
            while True:
                deleted = await store.compact(
                    self.db, tenant, occurred_before=cutoff, batch=self.batch, now=now
                )
                total += deleted
                if deleted < self.batch:
                    break
        if total:
            log.info("history_compacted", events_deleted=total, cutoff=cutoff.isoformat())
        await self.compact_runs(now)
        return total

    async def compact_runs(self, now: datetime) -> int:
        """Delete every tenant's sync runs that ended before the runs window (each
        integration's latest run stays); returns how many went."""
        cutoff = now - self.runs_window
        total = 0
        for tenant in await store.tenants_with_history(self.db):
            while True:
                async with self.db.connection() as tx:
                    deleted = await tx.sync.compact_runs(
                        tenant, ended_before=cutoff, batch=self.batch
                    )
                total += deleted
                if deleted < self.batch:
                    break
        if total:
            log.info("sync_runs_compacted", runs_deleted=total, cutoff=cutoff.isoformat())
        return total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval.total_seconds())
            try:
                await self.compact()
            except Exception as exc:
                # The database may be down; the next run deletes what this one could not.
                log.warning("history_compaction_failed", error=repr(exc))
