"""Reading the synced data: exact listings and the change feed that continues from them.

Every record carries a change number (see `storage.sync`). A listing (ListRecords) is exact at
one number, the *snapshot*: the integration's last number when its first page was read. Later
pages leave out what changed after it, and the feed after the snapshot brings those changes,
so "read everything, then follow the changes" sees every record once, at its latest state.

The feed holds each record once, at its latest change (an upsert, or a tombstone for a
deletion): it is compacted per record. A consumer keeping a copy needs exactly that — the
current state of every record that changed since it last looked, not the intermediate states
— and it bounds the feed by the size of the data, not by how often it changed.

Tombstones are kept for the retention window. A cursor whose copy may have missed a purged
deletion (see `FeedPosition`: a purge above its floor) is refused (CURSOR_EXPIRED) and the
consumer reads everything again. An empty cursor is never expired: it reads the whole feed,
and a read from the start that began after a purge is not troubled by it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID

from service.domain.exceptions import FailedPrecondition, OutOfRange
from service.domain.sync import FeedPosition, RecordChange, RecordsPage
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
        self, tenant: str, integration_id: UUID, position: FeedPosition | None, *, limit: int
    ) -> FeedRead:
        """At most `limit` changes after `position` (None: from the start), oldest first, and
        where the next read continues. FAILED_PRECONDITION CURSOR_EXPIRED when a tombstone the
        consumer may need was purged; OUT_OF_RANGE CURSOR_AHEAD when the position is past
        anything this integration numbered (e.g. the database was restored from a backup)."""
        after = position.after if position else 0
        async with self.db.connection() as tx:
            page = await tx.sync.changes(tenant, integration_id, after=after, limit=limit + 1)
        # From the start, the copy begins now: complete at the head once it has read up to it.
        position = position or FeedPosition(0, page.head)
        if page.purged_through > position.floor:
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
        changes = page.changes[:limit]
        more = len(page.changes) > limit
        # Caught up: everything up to the head was read in this one snapshot, so the next read
        # starts there (the head can be past the last change shown: changes move records).
        through = changes[-1].seq if more else page.head
        return FeedRead(changes, position.moved_to(through), more, position)


@dataclass(frozen=True)
class FeedRead:
    """A page of the change feed as a consumer gets it."""

    changes: list[RecordChange]
    #: Where the next read continues.
    next: FeedPosition
    #: More changes were there already.
    more: bool
    #: Where this read started.
    start: FeedPosition

    def cut(self, count: int) -> FeedRead:
        """Only the first `count` changes (a page that would be too big to send): the next
        read continues after the last of them, and there is more."""
        if count >= len(self.changes):
            return self
        kept = self.changes[:count]
        return FeedRead(kept, self.start.moved_to(kept[-1].seq), True, self.start)


def _days(window: timedelta) -> str:
    days = window.total_seconds() / 86400
    return f"{days:g} days" if days >= 1 else f"{window.total_seconds():g}s"
