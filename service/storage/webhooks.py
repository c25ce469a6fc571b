"""Webhook endpoints and deliveries in PostgreSQL; endpoint secrets sealed on the way in and
opened on the way out.

Like credentials (`credentials.py`), a signing secret exists above storage only as a string
handed back once (at creation or rotation) and to the sender that signs with it: it is sealed
with the key ring, the endpoint's identity bound as associated data. The sealed value holds
the current secret and, during a rotation's overlap, the previous one.

Deliveries are written by the events' own statements (the outbox); here they are claimed
(`FOR UPDATE SKIP LOCKED`, a lease version as fencing token, like the scheduler's claims),
their attempts recorded, and listed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from service.domain.exceptions import NotFound
from service.domain.webhooks import Attempt, Delivery, DeliveryState, Endpoint, EventType
from service.storage.queries import Q
from service.storage.sealed_rows import RekeyBatch, SealedColumn, SealedRows

Row = Mapping[str, Any]


def endpoint_from_row(row: Row) -> Endpoint:
    """The domain value of a `webhook_endpoints` row (without its secret)."""
    return Endpoint(
        tenant_id=row["tenant_id"],
        id=row["id"],
        url=row["url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        description=row["description"],
        event_types=frozenset(EventType(t) for t in row["event_types"]),
        enabled=row["enabled"],
        disabled_reason=row["disabled_reason"],
        disabled_at=row["disabled_at"],
        failing_since=row["failing_since"],
        previous_secret_expires_at=row["previous_secret_expires_at"],
        version=row["version"],
    )


def delivery_from_row(row: Row) -> Delivery:
    """The domain value of a `webhook_deliveries` row."""
    return Delivery(
        tenant_id=row["tenant_id"],
        endpoint_id=row["endpoint_id"],
        event_id=row["event_id"],
        event_type=EventType(row["event_type"]),
        integration_id=row["integration_id"],
        revision=row["revision"],
        payload=row["payload"],
        state=DeliveryState(row["state"]),
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        finished_at=row["finished_at"],
        attempts=tuple(Attempt.from_json(a) for a in row["attempts_log"]),
    )


@dataclass(frozen=True)
class Claimed:
    """A delivery claimed for one attempt, with what sending it takes."""

    delivery: Delivery
    url: str
    #: The secrets that sign it: the current one, then the previous one during an overlap.
    secrets: tuple[str, ...] = field(repr=False)
    #: The fencing token: the attempt's outcome counts only while the delivery still has it.
    lease_version: int


def _binding(tenant_id: str, endpoint_id: UUID) -> bytes:
    return f"webhook/{tenant_id}/{endpoint_id}".encode()


_SEALED = SealedColumn(
    Q["endpoint_secrets_batch"],
    Q["endpoint_secret_swap"],
    "secret_sealed",
    "id",
    lambda row: _binding(row["tenant_id"], row["id"]),
)


class WebhookRows(SealedRows):
    """The `webhook_endpoints` and `webhook_deliveries` tables in one transaction."""

    __slots__ = ()

    def _seal(self, tenant_id: str, endpoint_id: UUID, current: str, previous: str | None) -> bytes:
        plain = json.dumps({"current": current, "previous": previous}).encode()
        return self.keys.seal(plain, _binding(tenant_id, endpoint_id))

    def _open(self, tenant_id: str, endpoint_id: UUID, sealed: bytes) -> tuple[str, str | None]:
        opened = json.loads(self.keys.open(sealed, _binding(tenant_id, endpoint_id)))
        return opened["current"], opened["previous"]

    # -- endpoints -------------------------------------------------------------------------

    async def create(self, endpoint: Endpoint, secret: str) -> Endpoint:
        """Store a new endpoint with its secret, sealed."""
        row = await self._conn.fetchrow(
            Q["endpoint_insert"],
            endpoint.tenant_id,
            endpoint.id,
            endpoint.url,
            endpoint.description,
            sorted(t.value for t in endpoint.event_types),
            self._seal(endpoint.tenant_id, endpoint.id, secret, None),
            endpoint.created_at,
        )
        assert row is not None
        return endpoint_from_row(row)

    async def count(self, tenant_id: str) -> int:
        found: int = await self._conn.fetchval(Q["endpoint_count"], tenant_id)
        return found

    async def get(self, tenant_id: str, endpoint_id: UUID) -> Endpoint:
        """The endpoint, or NotFound (also for another tenant's id)."""
        row = await self._conn.fetchrow(Q["endpoint_get"], tenant_id, endpoint_id)
        if row is None:
            raise NotFound("webhook", str(endpoint_id))
        return endpoint_from_row(row)

    async def lock(self, tenant_id: str, endpoint_id: UUID) -> Endpoint:
        """Like `get`, holding the row's lock until the transaction ends."""
        row = await self._conn.fetchrow(Q["endpoint_lock"], tenant_id, endpoint_id)
        if row is None:
            raise NotFound("webhook", str(endpoint_id))
        return endpoint_from_row(row)

    async def list_page(
        self, tenant_id: str, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Endpoint]:
        """One page of the tenant's endpoints, newest first, after the keyset `after`."""
        rows = await self._conn.fetch(
            Q["endpoint_list"],
            tenant_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [endpoint_from_row(r) for r in rows]

    async def update(self, endpoint: Endpoint, now: datetime, *, was_enabled: bool) -> Endpoint:
        """Write a person's change of a locked endpoint (its version moves on). Disabling
        parks its pending deliveries; enabling makes them due at `now`."""
        row = await self._conn.fetchrow(
            Q["endpoint_update"],
            endpoint.tenant_id,
            endpoint.id,
            endpoint.url,
            endpoint.description,
            sorted(t.value for t in endpoint.event_types),
            endpoint.enabled,
            endpoint.disabled_reason,
            endpoint.disabled_at,
            endpoint.failing_since,
            now,
        )
        assert row is not None
        if endpoint.enabled and not was_enabled:
            await self._conn.execute(
                Q["endpoint_deliveries_resume"], endpoint.tenant_id, endpoint.id, now
            )
        elif was_enabled and not endpoint.enabled:
            await self._conn.execute(Q["endpoint_deliveries_park"], endpoint.tenant_id, endpoint.id)
        return endpoint_from_row(row)

    async def rotate_secret(
        self, endpoint: Endpoint, secret: str, *, overlap_until: datetime | None, now: datetime
    ) -> Endpoint:
        """Make `secret` the endpoint's (locked) current secret; the current one keeps signing
        beside it until `overlap_until` (None: no overlap)."""
        sealed = await self._conn.fetchval(
            Q["endpoint_secret_get"], endpoint.tenant_id, endpoint.id
        )
        current, _ = self._open(endpoint.tenant_id, endpoint.id, bytes(sealed))
        previous = current if overlap_until is not None else None
        row = await self._conn.fetchrow(
            Q["endpoint_secret_put"],
            endpoint.tenant_id,
            endpoint.id,
            self._seal(endpoint.tenant_id, endpoint.id, secret, previous),
            overlap_until,
            now,
        )
        assert row is not None
        return endpoint_from_row(row)

    async def delete(self, tenant_id: str, endpoint_id: UUID) -> None:
        """Remove the endpoint and, by cascade, its deliveries."""
        if await self._conn.fetchval(Q["endpoint_delete"], tenant_id, endpoint_id) is None:
            raise NotFound("webhook", str(endpoint_id))

    async def rekey_batch(self, after: tuple[str, UUID], limit: int) -> RekeyBatch:
        """Re-seal up to `limit` endpoint secrets after `after` with the newest key."""
        return await self._reseal(_SEALED, after, limit)

    # -- deliveries ------------------------------------------------------------------------

    async def claim_due(
        self, *, now: datetime, limit: int, claim_until: datetime, worker: str
    ) -> list[Claimed]:
        """Claim up to `limit` due deliveries (see deliveries_claim), secrets opened."""
        rows = await self._conn.fetch(Q["deliveries_claim"], now, limit, claim_until, worker)
        claimed = []
        for row in rows:
            current, previous = self._open(
                row["tenant_id"], row["endpoint_id"], bytes(row["secret_sealed"])
            )
            overlap = row["previous_secret_expires_at"]
            signing: tuple[str, ...] = (current,)
            if previous is not None and overlap is not None and overlap > now:
                signing = (current, previous)
            claimed.append(
                Claimed(delivery_from_row(row), row["url"], signing, row["lease_version"])
            )
        return claimed

    async def record_attempt(
        self,
        claimed: Claimed,
        attempt: Attempt,
        *,
        state: DeliveryState,
        next_attempt_at: datetime | None,
    ) -> bool:
        """Log an attempt and move the delivery on; False when its claim was taken over (the
        caller records nothing else)."""
        d = claimed.delivery
        found = await self._conn.fetchval(
            Q["delivery_attempted"],
            d.tenant_id,
            d.endpoint_id,
            d.event_id,
            claimed.lease_version,
            attempt.to_json(),
            state.value,
            next_attempt_at,
            None if state is DeliveryState.PENDING else attempt.at,
        )
        return found is not None

    async def release(self, claimed: Claimed) -> None:
        """Give an unattempted claim back, if it is still ours."""
        d = claimed.delivery
        await self._conn.execute(
            Q["delivery_release"], d.tenant_id, d.endpoint_id, d.event_id, claimed.lease_version
        )

    async def endpoint_succeeded(self, tenant_id: str, endpoint_id: UUID) -> None:
        await self._conn.execute(Q["endpoint_succeeded"], tenant_id, endpoint_id)

    async def endpoint_failed(
        self, tenant_id: str, endpoint_id: UUID, now: datetime
    ) -> Endpoint | None:
        """Count a failed attempt in the endpoint's streak; the endpoint after it (None when it
        is gone or disabled already)."""
        row = await self._conn.fetchrow(Q["endpoint_failed"], tenant_id, endpoint_id, now)
        return endpoint_from_row(row) if row else None

    async def disable(
        self,
        endpoint: Endpoint,
        reason: str,
        now: datetime,
        *,
        event_id: UUID,
        payload: Mapping[str, Any],
    ) -> bool:
        """Disable a failing endpoint and tell the tenant's other endpoints (see
        endpoint_disable); False when it was disabled already."""
        count = await self._conn.fetchval(
            Q["endpoint_disable"],
            endpoint.tenant_id,
            endpoint.id,
            reason,
            now,
            event_id,
            dict(payload),
        )
        return bool(count)

    async def deliveries(
        self,
        tenant_id: str,
        endpoint_id: UUID,
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Delivery]:
        """An endpoint's delivery log, newest first, after the keyset `after`."""
        rows = await self._conn.fetch(
            Q["deliveries_list"],
            tenant_id,
            endpoint_id,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
        return [delivery_from_row(r) for r in rows]

    async def purge_deliveries(self, finished_before: datetime, limit: int) -> int:
        """Forget up to `limit` deliveries that finished before `finished_before`."""
        count: int = await self._conn.fetchval(Q["deliveries_purge"], finished_before, limit)
        return count
