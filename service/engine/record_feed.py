"""Reading the synced data: exact listings and the change feed that continues from them.

Every record carries a change number (see `storage.sync`). A listing (ListRecords) is exact at
one number, the *snapshot*: the integration's last number when its first page was read. Later
pages leave out what changed after it, and the feed after the snapshot brings those changes,
so "read everything, then follow the changes" sees every record once, at its latest state.

The feed holds each record once, at its latest change (an upsert, or a tombstone for a
deletion): it is compacted per record. A consumer keeping a copy needs exactly that — the
current state of every record that changed since it last looked, not the intermediate states
— and it bounds the feed by the size of the data, not by how often it changed.

Tombstones are kept for the retention window. A cursor below the integration's purge
watermark may have missed a deletion and is refused (CURSOR_EXPIRED); the consumer reads
everything again. An empty cursor is never expired: it reads the whole feed.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

from service.domain.exceptions import FailedPrecondition, OutOfRange
from service.domain.sync import ChangesPage, RecordsPage
from service.storage.database import Database


class RecordFeed:
    """Reads records and their changes, with the deployment's tombstone retention."""

    def __init__(self, db: Database, *, retention: timedelta) -> None:
        self.db = db
        self.retention = retention

    async def records(
        self,
        tenant: str,
        integration_id: UUID,
        *,
        snapshot: int | None,
        after_id: str | None,
        limit: int,
    ) -> RecordsPage:
        """Live records ordered by id, exact at change number `snapshot` (None: now)."""
        async with self.db.connection() as tx:
            return await tx.sync.records_page(
                tenant, integration_id, snapshot=snapshot, after_id=after_id, limit=limit
            )

    async def changes(
        self, tenant: str, integration_id: UUID, *, after: int, limit: int
    ) -> ChangesPage:
        """At most `limit` changes after change number `after` (0: from the start), oldest
        first. FAILED_PRECONDITION CURSOR_EXPIRED when tombstones after `after` were purged;
        OUT_OF_RANGE CURSOR_AHEAD when `after` is past anything this integration numbered
        (e.g. the database was restored from a backup)."""
        async with self.db.connection() as tx:
            page = await tx.sync.changes(tenant, integration_id, after=after, limit=limit)
        if after and after < page.purged_through:
            raise FailedPrecondition(
                "the cursor is older than the change feed keeps deletions "
                f"({_days(self.retention)}): a record may have been deleted without this "
                "cursor seeing it. Read everything again with ListRecords and follow the feed "
                "from the cursor it returns",
                reason="CURSOR_EXPIRED",
                metadata={
                    "integration_id": str(integration_id),
                    "retention": _days(self.retention),
                },
            )
        if after > page.head:
            raise OutOfRange(
                "the cursor is ahead of this integration's changes (was the database restored "
                "from a backup?); read everything again with ListRecords",
                reason="CURSOR_AHEAD",
                metadata={"integration_id": str(integration_id)},
            )
        return page


def _days(window: timedelta) -> str:
    days = window.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{window.total_seconds():g}s"
