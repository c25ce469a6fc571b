"""Fleet-wide numbers for the metrics and readiness: a few cheap queries (see
queries/stats.sql), each run periodically rather than per scrape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from service.storage.database import Database
from service.storage.migrations import available
from service.storage.queries import Q


@dataclass(frozen=True)
class FleetStats:
    """How many integrations are in each status and breaker state, and the scheduler's lag."""

    by_status: dict[str, int] = field(default_factory=dict)
    open_breakers: int = 0
    closed_breakers: int = 0
    #: When the longest-open breaker opened (None: none is open).
    oldest_open: datetime | None = None
    #: The due time of the oldest attempt nobody works on (None: nothing is overdue).
    oldest_due: datetime | None = None


async def fleet(db: Database, now: datetime) -> FleetStats:
    """Read the fleet's numbers (two statements, no locks)."""
    async with db.raw() as conn:
        rows = await conn.fetch(Q["stats_by_status"])
        oldest_due = await conn.fetchval(Q["stats_oldest_due"], now)
    by_status: dict[str, int] = {}
    opened, closed = 0, 0
    oldest_open: datetime | None = None
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        if row["breaker_open"]:
            opened += row["n"]
            if row["oldest_open"] is not None:
                oldest_open = min(oldest_open or row["oldest_open"], row["oldest_open"])
        else:
            closed += row["n"]
    return FleetStats(by_status, opened, closed, oldest_open, oldest_due)


async def schema_current(db: Database) -> bool:
    """Whether every migration this build ships is applied."""
    async with db.raw() as conn:
        applied = await conn.fetchval(Q["stats_migration"])
    return int(applied) >= max(version for version, _, _ in available())
