"""Sync runs, synced records, their change feed and the sync cursor in PostgreSQL.

A page of a sync run commits in one statement (`commit_page`): its records, the deletions it
reports, the new cursor with the record count and the run's counters, fenced on the run's
claim, together with the change feed (change numbers for what changed, tombstones for what
was deleted) and the page's records.changed webhooks. The caller holds the integration's row
lock (see `IntegrationRows.lock`), so a page never interleaves with a Pause, a Delete or
another run, and change numbers commit in order. Everything the feed needs happens inside
that one statement, so the page write can change shape (COPY, records rejected before it)
without the feed changing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from service.domain import webhooks
from service.domain.exceptions import NotFound
from service.domain.model import Integration
from service.domain.sync import (
    ChangesPage,
    RecordChange,
    RecordsPage,
    StoredRecord,
    SyncOutcome,
    SyncRun,
    SyncTrigger,
)
from service.domain.taxonomy import IntegrationError
from service.storage.claims import Held
from service.storage.credentials import CredentialRows, StoredCredentials
from service.storage.errors import LeaseLost
from service.storage.integrations import Row, integration_from_row
from service.storage.queries import Q


def run_from_row(row: Row) -> SyncRun:
    """The domain value of a `sync_runs` row."""
    return SyncRun(
        tenant_id=row["tenant_id"],
        integration_id=row["integration_id"],
        id=row["id"],
        seq=row["seq"],
        trigger=SyncTrigger(row["trigger"]),
        outcome=SyncOutcome(row["outcome"]),
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        pages=row["pages"],
        records_upserted=row["records_upserted"],
        records_deleted=row["records_deleted"],
        full_resync=row["full_resync"],
        error=IntegrationError.from_json(row["error"]) if row["error"] else None,
        note=row["note"],
        lease_expires_at=row["lease_expires_at"],
        lease_version=row["lease_version"],
        worker=row["worker"],
        records_rejected=row["records_rejected"],
        rejected_example=row["rejected_example"],
    )


@dataclass(frozen=True)
class PageWrite:
    """One page (or a part of one) as the sync engine commits it."""

    #: Records to insert or update: the provider's id -> the record's JSON text.
    records: Mapping[str, str]
    #: Ids the provider reported deleted.
    deleted: Sequence[str]
    #: The full listing the page belongs to (None: a page of changes).
    listing: UUID | None
    #: The page ends a full listing: records the listing did not see are gone.
    ends_listing: bool
    #: Where the next fetch continues (the stored cursor).
    cursor: Mapping[str, Any]
    #: The page belongs to a full listing (the run counts as a full resync).
    full: bool
    #: This write ends a provider page (the run counts pages, not parts).
    ends_page: bool = True
    #: Records of the page that could not be stored, and an example.
    rejected: int = 0
    rejected_example: str = ""


@dataclass(frozen=True)
class PageCommitted:
    """What a committed page did."""

    #: The run with this page counted and its lease renewed.
    run: SyncRun
    #: The integration's record count after the page.
    record_count: int


@dataclass(frozen=True)
class StartHold:
    """An integration locked (until the transaction ends) to start a sync, with everything
    the run needs from the database before its first page."""

    integration: Integration
    #: Its lease version: the claim it is under now.
    lease_version: int
    #: Where the next sync continues (None: from scratch).
    cursor: dict[str, Any] | None
    #: Its credentials, opened (None: it has none).
    credentials: StoredCredentials | None
    #: The run RUNNING now, if there is one (see `running_run`).
    running: UUID | None


class SyncRows:
    """The `sync_runs` and `records` tables and the cursor, in one transaction."""

    __slots__ = ("_conn", "_credentials")

    def __init__(self, conn: asyncpg.Connection, credentials: CredentialRows) -> None:
        self._conn = conn
        self._credentials = credentials

    async def hold_for_start(self, tenant_id: str, integration_id: UUID) -> StartHold:
        """Lock the integration to start a sync (one statement: see `sync_start_hold`).
        NotFound when it does not exist."""
        row = await self._conn.fetchrow(Q["sync_start_hold"], tenant_id, integration_id)
        if row is None:
            raise NotFound("integration", str(integration_id))
        sealed = row["credentials_sealed"]
        credentials = None
        if sealed is not None:
            credentials = self._credentials.opened(
                tenant_id,
                integration_id,
                sealed,
                row["credentials_set_at"],
                row["credentials_account"],
            )
        return StartHold(
            integration_from_row(row),
            row["lease_version"],
            row["cursor"],
            credentials,
            row["running_id"],
        )

    async def start_run(
        self,
        tenant_id: str,
        integration_id: UUID,
        run_id: UUID,
        trigger: SyncTrigger,
        started_at: datetime,
        lease_expires_at: datetime,
        *,
        claimed: int | None,
        worker: str = "",
    ) -> SyncRun | None:
        """A new RUNNING run under the scheduler's claim `claimed` (None when the claim was
        lost), or with `claimed` None under a new claim taken now (see `sync_run_start`)."""
        row = await self._conn.fetchrow(
            Q["sync_run_start"],
            tenant_id,
            integration_id,
            run_id,
            trigger.value,
            started_at,
            lease_expires_at,
            claimed,
            worker,
        )
        return run_from_row(row) if row else None

    async def hold(
        self, tenant_id: str, integration_id: UUID, run_id: UUID
    ) -> tuple[Held, SyncRun | None]:
        """Lock the integration and read the run (None: gone with its integration), in one
        statement (see `sync_hold`). NotFound when the integration is gone."""
        row = await self._conn.fetchrow(Q["sync_hold"], tenant_id, integration_id, run_id)
        if row is None:
            raise NotFound("integration", str(integration_id))
        held = Held(integration_from_row(row), row["lease_version"])
        run = run_from_row(_Prefixed(row, "run_")) if row["run_id"] is not None else None
        return held, run

    async def running_run(self, tenant_id: str, integration_id: UUID) -> SyncRun | None:
        """The integration's RUNNING run, if there is one."""
        row = await self._conn.fetchrow(Q["sync_run_running"], tenant_id, integration_id)
        return run_from_row(row) if row else None

    async def insert_run(
        self,
        tenant_id: str,
        integration_id: UUID,
        run_id: UUID,
        trigger: SyncTrigger,
        started_at: datetime,
        lease_expires_at: datetime,
        *,
        lease_version: int = 0,
        worker: str = "",
    ) -> SyncRun:
        """A new RUNNING run, numbered after the integration's latest, holding the claim
        `lease_version` of the integration (Conflict when one is running already)."""
        row = await self._conn.fetchrow(
            Q["sync_run_insert"],
            tenant_id,
            integration_id,
            run_id,
            trigger.value,
            started_at,
            lease_expires_at,
            lease_version,
            worker,
        )
        assert row is not None
        return run_from_row(row)

    async def get_run(self, tenant_id: str, run_id: UUID) -> SyncRun | None:
        row = await self._conn.fetchrow(Q["sync_run_get"], tenant_id, run_id)
        return run_from_row(row) if row else None

    async def commit_page(
        self,
        run: SyncRun,
        page: PageWrite,
        *,
        now: datetime,
        lease_expires_at: datetime,
        finish: bool = False,
    ) -> PageCommitted:
        """Write one page with its cursor (see the module doc); with `finish`, the run ends
        SUCCEEDED with it (and its sync_run.finished webhooks are written, as `finish_run`
        writes them). LeaseLost when the run's claim was taken over or the run has ended:
        the transaction must roll back."""
        ended = dataclasses.replace(run, outcome=SyncOutcome.SUCCEEDED, ended_at=now)
        row = await self._conn.fetchrow(
            Q["sync_page_commit"],
            run.tenant_id,
            run.integration_id,
            list(page.records),
            list(page.records.values()),
            page.listing,
            now,
            list(page.deleted),
            page.ends_listing,
            dict(page.cursor),
            run.id,
            page.full,
            lease_expires_at,
            run.lease_version,
            page.rejected,
            page.rejected_example,
            page.ends_page,
            uuid4(),
            webhooks.MAX_RECORD_IDS,
            finish,
            uuid4(),
            webhooks.sync_run_finished(ended) if finish else None,
        )
        if row is None:
            raise LeaseLost(
                f"sync run {run.id} lost its claim (lease version {run.lease_version}) or ended"
            )
        return PageCommitted(run_from_row(row), int(row["integration_record_count"]))

    async def renew_lease(self, run: SyncRun, until: datetime) -> None:
        """Extend a RUNNING run's lease (the runner is alive, a page just takes long)."""
        await self._conn.execute(Q["sync_run_renew"], run.tenant_id, run.id, until)

    async def finish_run(
        self,
        run: SyncRun,
        outcome: SyncOutcome,
        ended_at: datetime,
        *,
        error: IntegrationError | None = None,
        note: str = "",
    ) -> SyncRun | None:
        """End a RUNNING run (and write its sync_run.finished webhooks); None when it had
        already ended (or is gone)."""
        ended = dataclasses.replace(run, outcome=outcome, ended_at=ended_at, error=error)
        row = await self._conn.fetchrow(
            Q["sync_run_finish"],
            run.tenant_id,
            run.id,
            outcome.value,
            ended_at,
            error.to_json() if error else None,
            note,
            uuid4(),
            webhooks.sync_run_finished(ended),
        )
        return run_from_row(row) if row else None

    async def list_runs(
        self, tenant_id: str, integration_id: UUID, *, before_seq: int | None, limit: int
    ) -> list[SyncRun]:
        """An integration's runs, newest first, older than `before_seq`."""
        rows = await self._conn.fetch(
            Q["sync_runs_list"], tenant_id, integration_id, before_seq, limit
        )
        return [run_from_row(r) for r in rows]

    async def compact_runs(self, tenant_id: str, *, ended_before: datetime, batch: int) -> int:
        """Delete one batch of the tenant's runs that ended before `ended_before` (each
        integration's latest run stays); returns how many went."""
        deleted: int = await self._conn.fetchval(
            Q["sync_runs_compact"], tenant_id, ended_before, batch
        )
        return deleted

    async def get_cursor(
        self, tenant_id: str, integration_id: UUID
    ) -> tuple[dict[str, Any] | None, str | None]:
        """(where the next sync continues (None: from scratch), the digest of the account the
        credentials belong to (None: not known))."""
        row = await self._conn.fetchrow(Q["sync_cursor_get"], tenant_id, integration_id)
        if row is None:
            return None, None
        return row["cursor"], row["account"]

    async def records_page(
        self,
        tenant_id: str,
        integration_id: UUID,
        *,
        snapshot: int | None,
        after_id: str | None,
        limit: int,
    ) -> RecordsPage:
        """Live records ordered by id after `after_id`, as of change number `snapshot` (None:
        as of now, which the page says). NotFound for an unknown integration."""
        rows = await self._conn.fetch(
            Q["records_snapshot_page"], tenant_id, integration_id, snapshot, after_id, limit
        )
        if not rows:
            raise NotFound("integration", str(integration_id))
        records = [
            StoredRecord(
                id=r["record_id"],
                data=_as_dict(r["data"]),
                updated_at=r["updated_at"],
                seq=r["seq"],
            )
            for r in rows
            if r["record_id"] is not None
        ]
        return RecordsPage(records, snapshot=rows[0]["snapshot"])

    async def changes(
        self, tenant_id: str, integration_id: UUID, *, after: int, limit: int
    ) -> ChangesPage:
        """At most `limit` changes after change number `after`, oldest first, with the bounds
        of the feed. NotFound for an unknown integration."""
        rows = await self._conn.fetch(Q["record_changes"], tenant_id, integration_id, after, limit)
        if not rows:
            raise NotFound("integration", str(integration_id))
        changes = [
            RecordChange(
                seq=r["seq"],
                record_id=r["record_id"],
                data=None if r["deleted_at"] is not None else _as_dict(r["data"]),
                changed_at=r["deleted_at"] or r["updated_at"],
            )
            for r in rows
            if r["record_id"] is not None
        ]
        return ChangesPage(changes, head=rows[0]["head"], purged_through=rows[0]["purged_through"])

    async def integrations_with_old_tombstones(
        self, deleted_before: datetime, limit: int
    ) -> list[tuple[str, UUID]]:
        """(tenant, integration) holding tombstones deleted before `deleted_before`."""
        rows = await self._conn.fetch(Q["tombstones_due"], deleted_before, limit)
        return [(r["tenant_id"], r["integration_id"]) for r in rows]

    async def purge_tombstones(
        self, tenant_id: str, integration_id: UUID, *, deleted_before: datetime, limit: int
    ) -> int:
        """Remove up to `limit` of the integration's tombstones deleted before
        `deleted_before`, moving its purge watermark; 0 when it is busy (try later)."""
        count: int = await self._conn.fetchval(
            Q["tombstones_purge"], tenant_id, integration_id, deleted_before, limit
        )
        return count


class _Prefixed(Mapping[str, Any]):
    """The columns of a row that carry `prefix`, without it (a joined table's columns)."""

    __slots__ = ("_prefix", "_row")

    def __init__(self, row: Row, prefix: str) -> None:
        self._row = row
        self._prefix = prefix

    def __getitem__(self, key: str) -> Any:
        return self._row[self._prefix + key]

    def __iter__(self) -> Iterator[str]:
        n = len(self._prefix)
        # keys(): iterating a driver row yields its values, not its names.
        return (k[n:] for k in self._row.keys() if k.startswith(self._prefix))  # noqa: SIM118

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _as_dict(data: Any) -> dict[str, Any]:
    # Connectors store JSON objects; anything else can only be shown wrapped in one.
    return data if isinstance(data, dict) else {"value": data}
