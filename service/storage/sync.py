"""Sync runs, synced records and the sync cursor in PostgreSQL.

Like `integrations.py`, every function takes the connection of the caller's transaction: the
sync engine commits a page's records, the new cursor, the record count and the run's counters
together, under the integration's row lock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.domain.sync import StoredRecord, SyncOutcome, SyncRun, SyncTrigger
from service.domain.taxonomy import IntegrationError
from service.storage.queries import Q


def run_from_row(row: asyncpg.Record) -> SyncRun:
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
    )


async def running_run(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID
) -> SyncRun | None:
    """The integration's RUNNING run, locked, if there is one."""
    row = await conn.fetchrow(Q["sync_run_running"], tenant_id, integration_id)
    return run_from_row(row) if row else None


async def insert_run(
    conn: asyncpg.Connection,
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
    `lease_version` of the integration."""
    row = await conn.fetchrow(
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


async def get_run(
    conn: asyncpg.Connection, tenant_id: str, run_id: UUID, *, for_update: bool = False
) -> SyncRun | None:
    query = Q["sync_run_get_for_update"] if for_update else Q["sync_run_get"]
    row = await conn.fetchrow(query, tenant_id, run_id)
    return run_from_row(row) if row else None


class LeaseLost(Exception):
    """A write of a sync whose claim was taken over: the integration's lease version moved
    on. The caller's transaction must roll back."""


async def record_progress(
    conn: asyncpg.Connection,
    run: SyncRun,
    *,
    upserted: int,
    deleted: int,
    full_resync: bool,
    lease_expires_at: datetime,
) -> SyncRun:
    """Count one committed page and renew the lease. LeaseLost when the run has ended."""
    row = await conn.fetchrow(
        Q["sync_run_progress"],
        run.tenant_id,
        run.id,
        upserted,
        deleted,
        full_resync,
        lease_expires_at,
    )
    if row is None:
        raise LeaseLost(f"sync run {run.id} is no longer running")
    return run_from_row(row)


async def renew_lease(conn: asyncpg.Connection, run: SyncRun, until: datetime) -> None:
    """Extend a RUNNING run's lease (the runner is alive, a page just takes long)."""
    await conn.execute(Q["sync_run_renew"], run.tenant_id, run.id, until)


async def finish_run(
    conn: asyncpg.Connection,
    run: SyncRun,
    outcome: SyncOutcome,
    ended_at: datetime,
    *,
    error: IntegrationError | None = None,
    note: str = "",
) -> SyncRun | None:
    """End a RUNNING run; None when it had already ended (or is gone)."""
    row = await conn.fetchrow(
        Q["sync_run_finish"],
        run.tenant_id,
        run.id,
        outcome.value,
        ended_at,
        error.to_json() if error else None,
        note,
    )
    return run_from_row(row) if row else None


async def list_runs(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    *,
    before_seq: int | None,
    limit: int,
) -> list[SyncRun]:
    """An integration's runs, newest first, older than `before_seq`."""
    rows = await conn.fetch(Q["sync_runs_list"], tenant_id, integration_id, before_seq, limit)
    return [run_from_row(r) for r in rows]


async def get_cursor(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID
) -> dict[str, Any] | None:
    """Where the next sync continues (None: from scratch)."""
    value: dict[str, Any] | None = await conn.fetchval(
        Q["sync_cursor_get"], tenant_id, integration_id
    )
    return value


async def put_cursor(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    cursor: Mapping[str, Any] | None,
    record_delta: int,
    *,
    lease_version: int,
) -> int:
    """Store the cursor and move the record count by `record_delta`; returns the new count.
    The fence: LeaseLost unless the integration still has `lease_version`."""
    count: int | None = await conn.fetchval(
        Q["sync_cursor_put"],
        tenant_id,
        integration_id,
        dict(cursor) if cursor is not None else None,
        record_delta,
        lease_version,
    )
    if count is None:
        raise LeaseLost(
            f"integration {integration_id} was claimed after lease version {lease_version}"
        )
    return count


async def upsert_records(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    records: Mapping[str, Mapping[str, Any]],
    *,
    listing: UUID | None,
    now: datetime,
) -> tuple[int, int]:
    """Write a page of records (each id once). Returns (new, written): written counts the new
    and the changed ones; unchanged records are only marked as seen by `listing`."""
    if not records:
        return 0, 0
    row = await conn.fetchrow(
        Q["records_upsert"],
        tenant_id,
        integration_id,
        list(records),
        [dict(data) for data in records.values()],
        listing,
        now,
    )
    assert row is not None
    return int(row["inserted"]), int(row["written"])


async def delete_records(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID, record_ids: Sequence[str]
) -> int:
    """Delete records by id; returns how many existed."""
    if not record_ids:
        return 0
    status = await conn.execute(Q["records_delete"], tenant_id, integration_id, list(record_ids))
    return _affected(status)


async def delete_unlisted(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID, listing: UUID
) -> int:
    """Delete the records the full listing `listing` did not see; returns how many."""
    status = await conn.execute(Q["records_delete_unlisted"], tenant_id, integration_id, listing)
    return _affected(status)


async def list_records(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    *,
    after_id: str | None,
    limit: int,
) -> list[StoredRecord]:
    """An integration's records ordered by id, after `after_id`."""
    rows = await conn.fetch(Q["records_list"], tenant_id, integration_id, after_id, limit)
    return [
        StoredRecord(id=r["record_id"], data=_as_dict(r["data"]), updated_at=r["updated_at"])
        for r in rows
    ]


def _affected(status: str) -> int:
    """The row count of a command status such as 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


def _as_dict(data: Any) -> dict[str, Any]:
    # Connectors store JSON objects; anything else can only be shown wrapped in one.
    return data if isinstance(data, dict) else {"value": data}
