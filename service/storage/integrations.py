"""Integrations, their history and Create's idempotency keys in PostgreSQL.

`IntegrationRows.record_change` is the one way an integration changes: one statement takes
the tenant's next revision, writes the new state, appends the event and writes its webhooks
(the outbox), so the revision row lock is the last lock taken and commits happen in revision
order.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from service.domain import push, webhooks
from service.domain.breaker import BreakerState, Halt
from service.domain.exceptions import NotFound
from service.domain.model import Breaker, Event, Integration
from service.domain.push import Push, PushState
from service.domain.status import Status, SyncState
from service.domain.taxonomy import IntegrationError
from service.storage.queries import Q

#: How long a writer holding its tenant's revision lock may keep the server waiting between
#: statements (idle in transaction) before the server ends its transaction. Holding it normally
#: takes one round trip, until COMMIT.
REVISION_HOLD_LIMIT = "5s"

#: A row as the driver returns it; mapped to typed values here and nowhere else.
Row = Mapping[str, Any]


def integration_from_row(row: Row) -> Integration:
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
                trial=row["breaker_trial"],
            ),
            threshold=row["breaker_threshold"],
        ),
        last_synced_at=row["last_synced_at"],
        next_sync_at=row["next_sync_at"],
        record_count=row["record_count"],
        push=Push(
            state=PushState(row["push_state"]),
            reason=row["push_reason"],
            expires_at=row["push_expires_at"],
            retry_at=row["push_retry_at"],
            check_at=row["push_check_at"],
            pending=row["push_pending"],
            notified_at=row["push_notified_at"],
            poll_interval=row["push_poll_interval"],
        ),
    )


def event_from_row(row: Row) -> Event:
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
        connector_type=row["connector_type"],
    )


def _columns(i: Integration) -> tuple[Any, ...]:
    """The state of `i` as the parameters $1-$24 of change_insert / change_update."""
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
        i.created_at,
        i.updated_at,
        b.state.trial,
    )


def _push_columns(i: Integration) -> tuple[Any, ...]:
    """The push state of `i` as the parameters $33-$40 of change_insert / change_update."""
    p = i.push
    return (
        p.state.value,
        p.reason,
        p.expires_at,
        p.retry_at,
        p.check_at,
        p.pending,
        p.notified_at,
        p.poll_interval,
    )


class IntegrationRows:
    """The `integrations` and `events` tables, and Create's request ids, in one transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def get(self, tenant_id: str, integration_id: UUID) -> Integration:
        """The integration, or NotFound (also for another tenant's id)."""
        row = await self._conn.fetchrow(Q["integration_get"], tenant_id, integration_id)
        if row is None:
            raise NotFound("integration", str(integration_id))
        return integration_from_row(row)

    async def lock(self, tenant_id: str, integration_id: UUID) -> Integration:
        """Like `get`, holding the row's lock until the transaction ends: every change of an
        integration (and every write of its work) happens under it."""
        row = await self._conn.fetchrow(Q["integration_get_for_update"], tenant_id, integration_id)
        if row is None:
            raise NotFound("integration", str(integration_id))
        return integration_from_row(row)

    async def list_page(
        self,
        tenant_id: str,
        *,
        statuses: Sequence[Status],
        connector_type: str,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Integration]:
        """One page, newest first, after the keyset position `after`."""
        rows = await self._conn.fetch(
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
        self,
        *,
        before: Integration | None,
        after: Integration | None,
        trigger: str,
        actor: str,
        reason: str,
        occurred_at: datetime,
        error: IntegrationError | None = None,
    ) -> Event:
        """Write one change of an integration: its new state (inserted when `before` is None;
        when `after` is None it was deleted, see `delete`) with the tenant's next revision,
        and the event. Returns the event; `event.state` is the integration as stored. Must be
        the transaction's last write."""
        subject = after or before
        assert subject is not None, "a change needs a before or an after"
        stored = after.replace(updated_at=occurred_at) if after is not None else None
        if stored is not None and before is not None and push.affects(before, stored):
            # Its channel may have to change (pause, brake, new config…): the channel
            # reconciler looks at once (service.engine.push).
            stored = stored.replace(push=stored.push.due(occurred_at))
        event = (
            trigger,
            before.status.value if before else None,
            stored.status.value if stored else None,
            reason,
            actor,
            error.to_json() if error else None,
        )
        recorded = Event(
            tenant_id=subject.tenant_id,
            revision=0,  # taken by the statement
            integration_id=subject.id,
            trigger=trigger,
            from_status=before.status if before else None,
            to_status=stored.status if stored else None,
            reason=reason,
            actor=actor,
            occurred_at=occurred_at,
            error=error,
            state=stored,
            connector_type=subject.connector_type,
        )
        # Its webhook, written for the tenant's endpoints that want it (if any) by the same
        # statement (see change_update).
        hook = (uuid4(), webhooks.status_changed(recorded))
        args: tuple[Any, ...]
        if stored is None:
            query = Q["change_delete"]
            args = (
                subject.tenant_id,
                subject.id,
                REVISION_HOLD_LIMIT,
                *event,
                occurred_at,
                subject.connector_type,
                *hook,
            )
        else:
            query = Q["change_insert"] if before is None else Q["change_update"]
            args = (
                *_columns(stored),
                REVISION_HOLD_LIMIT,
                *event,
                stored.to_json(),
                *_push_columns(stored),
                *hook,
            )
        revision: int = await self._conn.fetchval(query, *args)
        return dataclasses.replace(
            recorded,
            revision=revision,
            state=stored.replace(revision=revision) if stored is not None else None,
        )

    async def delete(self, tenant_id: str, integration_id: UUID) -> int:
        """Remove the integration and, by cascade, everything that belongs to it. Returns how
        many records it held. Its tombstone is `record_change(after=None)`. Its push channels
        stay, retired, until the provider stopped them (see migrations/0008_push.sql)."""
        await self._conn.execute(Q["push_channels_orphan"], tenant_id, integration_id)
        count = await self._conn.fetchval(Q["integration_delete"], tenant_id, integration_id)
        if count is None:
            raise NotFound("integration", str(integration_id))
        return int(count)

    async def events(
        self, tenant_id: str, integration_id: UUID, *, before_revision: int | None, limit: int
    ) -> list[Event]:
        """An integration's history, newest first, older than `before_revision`."""
        rows = await self._conn.fetch(
            Q["events_list"], tenant_id, integration_id, before_revision, limit
        )
        return [event_from_row(r) for r in rows]

    async def find_create_request(
        self, tenant_id: str, request_id: str, newer_than: datetime
    ) -> tuple[UUID, str] | None:
        """(integration id, request fingerprint) of an unexpired Create with this request id."""
        row = await self._conn.fetchrow(Q["create_request_get"], tenant_id, request_id, newer_than)
        return (row["integration_id"], row["fingerprint"]) if row else None

    async def remember_create_request(
        self,
        tenant_id: str,
        request_id: str,
        integration_id: UUID,
        fingerprint: str,
        *,
        now: datetime,
        expired_before: datetime,
    ) -> bool:
        """Forget the tenant's expired request ids, then remember a Create's; False when an
        unexpired one holds it already (a concurrent retry won the race)."""
        await self._conn.execute(Q["create_requests_purge"], tenant_id, expired_before)
        status = await self._conn.execute(
            Q["create_request_put"],
            tenant_id,
            request_id,
            integration_id,
            fingerprint,
            now,
            expired_before,
        )
        return bool(status.endswith(" 1"))
