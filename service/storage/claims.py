"""Claims of background work and lateness notices in PostgreSQL.

A *claim* says "this worker does the next attempt of this integration": the scheduler takes
due integrations with `SELECT … FOR UPDATE SKIP LOCKED` (replicas never wait for each other
and never take the same row), and every claim moves the integration's `lease_version` on.
That version is the fencing token of the work: a sync run carries it and every page write
requires it (`SyncRows.commit_page`), a probe's outcome is written only while it still holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg

from service.domain.exceptions import NotFound
from service.domain.model import Integration
from service.storage.integrations import integration_from_row
from service.storage.queries import Q


@dataclass(frozen=True)
class Claim:
    """One integration claimed for its next attempt."""

    tenant_id: str
    integration_id: UUID
    connector_type: str
    #: The fencing token: writes of this attempt count only while the integration has it.
    lease_version: int
    #: The breaker is open (and no probe passed yet): the attempt is a probe, not a sync.
    probe: bool


@dataclass(frozen=True)
class Held:
    """An integration locked by the caller's transaction, with its current lease version."""

    integration: Integration
    lease_version: int


class ClaimRows:
    """Claims and lateness notices, in one transaction."""

    __slots__ = ("_conn",)

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def claim_due(
        self,
        *,
        now: datetime,
        connector_type: str,
        limit: int,
        sync_claim_until: datetime,
        probe_claim_until: datetime,
        worker: str,
    ) -> list[Claim]:
        """Claim up to `limit` due integrations of `connector_type`, earliest due first."""
        rows = await self._conn.fetch(
            Q["claim_due"], now, connector_type, limit, sync_claim_until, probe_claim_until, worker
        )
        return [
            Claim(r["tenant_id"], r["id"], r["connector_type"], r["lease_version"], r["probe"])
            for r in rows
        ]

    async def hold(self, tenant_id: str, integration_id: UUID) -> Held:
        """Lock the integration (until the transaction ends) and read its lease version, to
        check that a claim still holds before writing its work. NotFound when it is gone."""
        row = await self._conn.fetchrow(Q["integration_get_for_update"], tenant_id, integration_id)
        if row is None:
            raise NotFound("integration", str(integration_id))
        return Held(integration_from_row(row), row["lease_version"])

    async def take(self, tenant_id: str, integration_id: UUID, lease_version: int) -> bool:
        """Turn a claim into a running sync (its run's lease covers it from now on). False when
        the claim was lost to another worker."""
        found = await self._conn.fetchval(Q["claim_take"], tenant_id, integration_id, lease_version)
        return found is not None

    async def claim_now(self, tenant_id: str, integration_id: UUID) -> int:
        """Claim the integration for work a person started; returns the new lease version."""
        version: int = await self._conn.fetchval(Q["claim_now"], tenant_id, integration_id)
        return version

    async def release(self, claim: Claim) -> None:
        """Give a claim back, if it is still ours."""
        await self._conn.execute(
            Q["claim_release"], claim.tenant_id, claim.integration_id, claim.lease_version
        )

    async def late_due(self, now: datetime, limit: int) -> list[tuple[str, UUID, datetime]]:
        """(tenant, integration, late_at) of integrations late by `now` whose lateness has not
        been recorded yet, longest late first."""
        rows = await self._conn.fetch(Q["late_due"], now, limit)
        return [(r["tenant_id"], r["id"], r["late_at"]) for r in rows]

    async def take_late_notice(
        self, tenant_id: str, integration_id: UUID, late_at: datetime
    ) -> bool:
        """Take the job of recording this lateness (the row stays locked until the caller
        commits). False when another replica took it or the integration is no longer late."""
        found = await self._conn.fetchval(Q["late_notice"], tenant_id, integration_id, late_at)
        return found is not None
