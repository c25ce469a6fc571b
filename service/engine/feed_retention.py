"""What the change feed and the webhook outbox keep, and for how long.

Deleted records stay in the change feed as tombstones for the tombstone window, then go. Each
purge moves the integration's watermark (the highest change number removed) in the same
statement, so the feed can refuse a cursor that would otherwise silently miss a deletion
(CURSOR_EXPIRED). Finished webhook deliveries (delivered or given up) stay in the delivery
log for its window. Every replica runs the job; two at once are harmless (one skips what the
other holds locked, and finds nothing left later), so no coordination is needed.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from service.background import cancel_and_wait
from service.clock import Clock, utc_now
from service.storage.database import Database

log = structlog.get_logger(__name__)


class FeedRetention:
    """Purges tombstones older than `window` and delivery logs older than `delivery_window`,
    every `interval`, in batches."""

    def __init__(
        self,
        db: Database,
        window: timedelta,
        *,
        delivery_window: timedelta,
        clock: Clock = utc_now,
        interval: timedelta | None = None,
        batch: int = 5000,
    ) -> None:
        self.db = db
        self.window = window
        self.delivery_window = delivery_window
        self.clock = clock
        # As HistoryRetention: a tenth of the shorter window, between a second and an hour.
        shorter = min(window, delivery_window)
        self.interval = interval or min(timedelta(hours=1), max(timedelta(seconds=1), shorter / 10))
        self.batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="feed-retention")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def purge(self) -> int:
        """Purge old tombstones and delivery logs now; returns how many rows went."""
        return await self.purge_tombstones() + await self.purge_deliveries()

    async def purge_tombstones(self) -> int:
        """Purge every integration's old tombstones now; returns how many went. An
        integration busy with a page commit is left for the next pass."""
        cutoff = self.clock() - self.window
        total = 0
        async with self.db.connection() as tx:
            due = await tx.sync.integrations_with_old_tombstones(cutoff, 1000)
            for tenant, integration_id in due:
                while True:
                    purged = await tx.sync.purge_tombstones(
                        tenant, integration_id, deleted_before=cutoff, limit=self.batch
                    )
                    total += purged
                    if purged < self.batch:
                        break
        if total:
            log.info("tombstones_purged", count=total, cutoff=cutoff.isoformat())
        return total

    async def purge_deliveries(self) -> int:
        """Forget deliveries that finished before the delivery-log window."""
        cutoff = self.clock() - self.delivery_window
        total = 0
        async with self.db.connection() as tx:
            while True:
                purged = await tx.webhooks.purge_deliveries(cutoff, self.batch)
                total += purged
                if purged < self.batch:
                    break
        if total:
            log.info("webhook_deliveries_purged", count=total, cutoff=cutoff.isoformat())
        return total

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval.total_seconds())
            try:
                await self.purge()
            except Exception as exc:
                # The database may be down; the next run purges what this one could not.
                log.warning("feed_retention_failed", error=repr(exc))
