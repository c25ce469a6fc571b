"""Lateness notices: an event when an integration has not synced successfully for twice its
sync interval, so WatchStatus subscribers (an alerting job, a UI) learn it without polling.

`late` on the API message is computed from `last_sync_time` whenever an integration is read.
Becoming late, though, is not a change anybody makes, so the scheduler records it: each sweep
finds integrations whose `late_at` has passed without a notice, and writes a "late" event (the
status does not change). Stopping being late needs no notice of its own: it only happens
through a change that has its event already (a successful sync, a Pause, a new interval).
"""

from __future__ import annotations

from datetime import datetime

import structlog

from service.clock import Clock
from service.domain.model import Integration
from service.engine import changes
from service.storage.database import Database

log = structlog.get_logger(__name__)

#: The trigger of a lateness notice in the history (not a transition: the status stays).
LATE_TRIGGER = "late"


class LateNotices:
    """Records "late" events; safe to run on every replica at once (each lateness is
    noticed once, under the integration's row lock)."""

    def __init__(self, db: Database, clock: Clock, *, batch: int = 100) -> None:
        self.db = db
        self.clock = clock
        self.batch = batch

    async def notice(self) -> int:
        """Record every unnoticed lateness (up to a batch); returns how many were recorded."""
        now = self.clock()
        async with self.db.connection() as tx:
            due = await tx.claims.late_due(now, self.batch)
        recorded = 0
        for tenant, integration_id, late_at in due:
            async with self.db.transaction() as tx:
                if not await tx.claims.take_late_notice(tenant, integration_id, late_at):
                    continue  # another replica's, or it synced meanwhile
                current = await tx.integrations.lock(tenant, integration_id)
                await changes.note(
                    tx,
                    current,
                    LATE_TRIGGER,
                    actor="scheduler",
                    reason=_reason(current, now),
                    now=now,
                )
                recorded += 1
        if recorded:
            log.info("integrations_late", count=recorded)
        return recorded


def _reason(integration: Integration, now: datetime) -> str:
    since = integration.last_synced_at
    interval = _human(integration.sync_interval.total_seconds())
    if since is None:
        return (
            f"it has never synced successfully, and it was created more than twice "
            f"its sync interval ({interval}) ago"
        )
    return (
        f"its last successful sync was at {since.isoformat(timespec='seconds')}, "
        f"more than twice its sync interval ({interval}) ago"
    )


def _human(seconds: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
