"""Integrations, their history and idempotency keys in PostgreSQL.

Every function takes the connection of the caller's transaction, so the engine decides what
commits together. `record_change` is the one way an integration changes: it allocates the
tenant's next revision, writes the new state and appends the event, in that order, so the
revision row lock is the last lock taken and commits happen in revision order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg

from service.domain.breaker import BreakerState, Halt
from service.domain.exceptions import NotFound
from service.domain.model import Breaker, Event, Integration
from service.domain.status import Status, SyncState
from service.domain.taxonomy import IntegrationError
from service.storage.queries import Q

#: How long a writer holding its tenant's revision lock may keep the server waiting between
#: statements (idle in transaction) before the server ends its transaction. Holding it normally
#: takes a few round trips, until COMMIT.
REVISION_HOLD_LIMIT = "5s"


def integration_from_row(row: asyncpg.Record) -> Integration:
    """The domain value of an `integrations` row (joined with its credentials' kind)."""
    return Integration(
        tenant_id=row["tenant_id"],
        id=row["id"],
        display_name=row["display_name"],
        connector_type=row["connector_type"],
        status=Status(row["status"]),
        revision=row["revision"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sync_interval=row["sync_interval"],
        config=row["config"],
        missing_config_fields=tuple(row["missing_config_fields"]),
        credentials_kind=row["credentials_kind"],
        credentials_set_at=row["credentials_set_at"],
        sync_state=SyncState(row["sync_state"]) if row["sync_state"] else None,
        last_error=IntegrationError.from_json(row["last_error"]) if row["last_error"] else None,
        breaker=Breaker(
            state=BreakerState(
                consecutive_failures=row["consecutive_failures"],
                open=row["breaker_open"],
                opened_at=row["breaker_opened_at"],
                next_attempt_at=row["next_attempt_at"],
                slow_steps=row["breaker_slow_steps"],
                halt=Halt(row["breaker_halt"]) if row["breaker_halt"] else None,
            ),
            threshold=row["breaker_threshold"],
        ),
        last_synced_at=row["last_synced_at"],
        next_sync_at=row["next_sync_at"],
        record_count=row["record_count"],
    )


def _columns(i: Integration) -> tuple[Any, ...]:
    b = i.breaker
    return (
        i.tenant_id,
        i.id,
        i.display_name,
        i.connector_type,
        i.status.value,
        i.sync_state.value if i.sync_state else None,
        i.config,
        list(i.missing_config_fields),
        i.last_error.to_json() if i.last_error else None,
        b.consecutive_failures,
        b.open,
        b.opened_at,
        b.next_attempt_at,
        b.threshold,
        b.state.slow_steps,
        b.halt.value if b.halt else None,
        i.sync_interval,
        i.last_synced_at,
        i.next_sync_at,
        i.late_at,
        i.record_count,
        i.revision,
        i.created_at,
        i.updated_at,
    )


async def get(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID, *, for_update: bool = False
) -> Integration:
    """The integration, or NotFound (also for another tenant's id)."""
    query = Q["integration_get_for_update"] if for_update else Q["integration_get"]
    row = await conn.fetchrow(query, tenant_id, integration_id)
    if row is None:
        raise NotFound("integration", str(integration_id))
    return integration_from_row(row)


async def list_page(
    conn: asyncpg.Connection,
    tenant_id: str,
    *,
    statuses: Sequence[Status],
    connector_type: str,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[Integration]:
    """One page, newest first, after the keyset position `after`."""
    rows = await conn.fetch(
        Q["integration_list"],
        tenant_id,
        [s.value for s in statuses],
        connector_type,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [integration_from_row(r) for r in rows]


async def record_change(
    conn: asyncpg.Connection,
    *,
    before: Integration | None,
    after: Integration | None,
    trigger: str,
    actor: str,
    reason: str,
    occurred_at: datetime,
    error: IntegrationError | None = None,
    tenant_id: str | None = None,
    integration_id: UUID | None = None,
) -> Event:
    """Write one change of an integration: its new state (inserted when `before` is None,
    deleted when `after` is None) with the tenant's next revision, and the event.
    Returns the event; `event.state` is the integration as stored."""
    subject = after or before
    assert subject is not None, "a change needs a before or an after"
    tenant = tenant_id or subject.tenant_id
    ident = integration_id or subject.id
    if after is None:
        # Delete: the history goes with the integration, but for the tombstone written below.
        await conn.execute(Q["events_delete_for_integration"], tenant, ident)
    # The revision lock stops every writer of the tenant until this transaction ends: should
    # this process stall right now (SIGSTOP, a partition), the server ends the transaction
    # after a while instead of letting one frozen replica stall the whole tenant.
    await conn.execute(Q["revision_hold_limit"], REVISION_HOLD_LIMIT)
    revision: int = await conn.fetchval(Q["revision_next"], tenant)
    stored: Integration | None = None
    if after is not None:
        stored = after.replace(revision=revision, updated_at=occurred_at)
        if before is None:
            await conn.execute(Q["integration_insert"], *_columns(stored))
        else:
            await conn.execute(Q["integration_update"], *_columns(stored))
    event = Event(
        tenant_id=tenant,
        revision=revision,
        integration_id=ident,
        trigger=trigger,
        from_status=before.status if before else None,
        to_status=stored.status if stored else None,
        reason=reason,
        actor=actor,
        occurred_at=occurred_at,
        error=error,
        state=stored,
    )
    await conn.execute(
        Q["event_insert"],
        tenant,
        revision,
        ident,
        trigger,
        event.from_status.value if event.from_status else None,
        event.to_status.value if event.to_status else None,
        reason,
        actor,
        error.to_json() if error else None,
        stored.to_json() if stored else None,
        occurred_at,
    )
    await conn.execute(Q["event_notify"], tenant, revision)
    return event


async def delete(conn: asyncpg.Connection, tenant_id: str, integration_id: UUID) -> int:
    """Remove the integration and, by cascade, everything that belongs to it. Returns how
    many records it held."""
    count = await conn.fetchval(Q["integration_delete"], tenant_id, integration_id)
    if count is None:
        raise NotFound("integration", str(integration_id))
    return int(count)


def event_from_row(row: asyncpg.Record) -> Event:
    """The domain value of an `events` row."""
    return Event(
        tenant_id=row["tenant_id"],
        revision=row["revision"],
        integration_id=row["integration_id"],
        trigger=row["trigger"],
        from_status=Status(row["from_status"]) if row["from_status"] else None,
        to_status=Status(row["to_status"]) if row["to_status"] else None,
        reason=row["reason"],
        actor=row["actor"],
        occurred_at=row["occurred_at"],
        error=IntegrationError.from_json(row["error"]) if row["error"] else None,
        state=Integration.from_json(row["state"]) if row["state"] else None,
    )


async def list_events(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    *,
    before_revision: int | None,
    limit: int,
) -> list[Event]:
    """An integration's history, newest first, older than `before_revision`."""
    rows = await conn.fetch(Q["events_list"], tenant_id, integration_id, before_revision, limit)
    return [event_from_row(r) for r in rows]


async def find_create_request(
    conn: asyncpg.Connection, tenant_id: str, request_id: str, newer_than: datetime
) -> tuple[UUID, str] | None:
    """(integration id, request fingerprint) of an unexpired Create with this request id."""
    row = await conn.fetchrow(Q["create_request_get"], tenant_id, request_id, newer_than)
    return (row["integration_id"], row["fingerprint"]) if row else None


async def remember_create_request(
    conn: asyncpg.Connection,
    tenant_id: str,
    request_id: str,
    integration_id: UUID,
    fingerprint: str,
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Remember a Create's request id; False when an unexpired one holds it already (a
    concurrent retry won the race)."""
    status = await conn.execute(
        Q["create_request_put"],
        tenant_id,
        request_id,
        integration_id,
        fingerprint,
        now,
        expired_before,
    )
    return bool(status.endswith(" 1"))


async def purge_create_requests(
    conn: asyncpg.Connection, tenant_id: str, expired_before: datetime
) -> None:
    await conn.execute(Q["create_requests_purge"], tenant_id, expired_before)


async def put_credentials(
    conn: asyncpg.Connection,
    tenant_id: str,
    integration_id: UUID,
    kind: str,
    sealed: bytes,
    now: datetime,
) -> None:
    await conn.execute(Q["credentials_put"], tenant_id, integration_id, kind, sealed, now)


async def get_credentials(
    conn: asyncpg.Connection, tenant_id: str, integration_id: UUID
) -> tuple[str, bytes] | None:
    """(kind, sealed bytes) of the stored credentials, if any."""
    row = await conn.fetchrow(Q["credentials_get"], tenant_id, integration_id)
    return (row["kind"], bytes(row["sealed"])) if row else None
