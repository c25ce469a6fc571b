"""The reads behind WatchStatus and the compaction of old history.

Revisions of a tenant commit in order (see `integrations.record_change`), so "every event
after revision N" read in one statement never has a hole that a later read could fill: what
is committed after the read has a higher revision than anything it returned. Compaction
moves a per-tenant watermark in the same statement as it deletes, and every page read
returns that watermark, so a reader can always tell "nothing happened" from "it was
compacted away".

Connection failures surface as `DatabaseUnavailable` (see `database.translated`; here a
connection closed under a read counts too), so streams and their clients retry instead of
reporting an internal error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from service.domain.model import Event, Integration
from service.domain.watch import WatchFilter
from service.storage.database import Database
from service.storage.errors import DatabaseUnavailable
from service.storage.integrations import event_from_row, integration_from_row
from service.storage.queries import Q

#: Upper bound meaning "no upper bound" for history reads.
NEWEST = 2**63 - 1


@dataclass(frozen=True)
class HistoryPage:
    """Events after a revision, oldest first, and what bounded the read."""

    events: list[Event]
    #: The highest revision compaction has deleted; history after it is complete.
    compacted_through: int
    #: The tenant's newest committed revision when the page was read.
    head: int

    @property
    def last_revision(self) -> int | None:
        return self.events[-1].revision if self.events else None


@asynccontextmanager
async def _reading(db: Database) -> AsyncIterator[asyncpg.Connection]:
    """A connection for a stream's read; one closed under it means the database went away."""
    try:
        async with db.raw() as conn:
            yield conn
    except asyncpg.InterfaceError as exc:
        raise DatabaseUnavailable() from exc


async def snapshot(
    db: Database, tenant_id: str, selection: WatchFilter
) -> tuple[int, list[Integration]]:
    """(revision, the selected integrations as of exactly that revision), oldest first."""
    async with (
        _reading(db) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        # Both reads see the one snapshot taken by the first statement.
        revision: int = await conn.fetchval(Q["watch_head"], tenant_id)
        rows = await conn.fetch(
            Q["watch_snapshot"],
            tenant_id,
            list(selection.ids),
            [s.value for s in selection.statuses],
            selection.connector_type,
        )
    return revision, [integration_from_row(r) for r in rows]


async def history(
    db: Database, tenant_id: str, after: int, *, through: int = NEWEST, limit: int
) -> HistoryPage:
    """At most `limit` events with `after < revision <= through`, oldest first."""
    async with _reading(db) as conn:
        rows = await conn.fetch(Q["watch_history"], tenant_id, after, through, limit)
    first = rows[0]
    events = [event_from_row(r) for r in rows if r["revision"] is not None]
    return HistoryPage(events, compacted_through=first["compacted_through"], head=first["head"])


async def head(db: Database, tenant_id: str) -> int:
    """The tenant's newest committed revision (0 before its first change)."""
    async with _reading(db) as conn:
        revision: int = await conn.fetchval(Q["watch_head"], tenant_id)
    return revision


async def tenants_with_history(db: Database) -> list[str]:
    async with db.raw() as conn:
        return [r["tenant_id"] for r in await conn.fetch(Q["history_tenants"])]


async def compact(
    db: Database, tenant_id: str, *, occurred_before: datetime, batch: int, now: datetime
) -> int:
    """Delete one batch of the tenant's history older than `occurred_before` (keeping each
    live integration's latest event) and move the watermark; returns how many went."""
    async with db.raw() as conn:
        deleted: int = await conn.fetchval(
            Q["history_compact"], tenant_id, occurred_before, batch, now
        )
    return deleted
