"""Connection probes: the only attempts an integration gets while its breaker is open.

A probe is the connector's `test_connection` — the cheap check a person's TestConnection makes
— with a time limit: one that hangs counts as a failure (SERVICE_UNAVAILABLE) once the
policy's probe timeout has passed. The scheduler claims each probe like a sync, so one runs at
a time per integration across all replicas. Its outcome is written only while that claim
still holds (the lease version) and the breaker is still open, so a Pause, a Sync or a
TestConnection that came in meanwhile wins. A success closes the breaker (REACTIVATED: back to
ACTIVE, a sync from the cursor due at once); a failure moves the next probe further out.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import structlog

from service.clock import Clock
from service.connectors.http import purpose
from service.domain.exceptions import NotFound
from service.domain.model import Integration
from service.domain.schedule import Attempt, Schedule
from service.domain.status import Status
from service.domain.taxonomy import ErrorCode, IntegrationError
from service.engine.lifecycle import Lifecycle
from service.engine.providers import Providers
from service.storage import claims
from service.storage.claims import Claim

log = structlog.get_logger(__name__)

#: The actor of the changes probes make.
PROBE_ACTOR = "probe"


class Prober:
    """Runs claimed probes and records their outcome."""

    def __init__(
        self, lifecycle: Lifecycle, providers: Providers, schedule: Schedule, clock: Clock
    ) -> None:
        self.lifecycle = lifecycle
        self.providers = providers
        self.schedule = schedule
        self.clock = clock

    @property
    def timeout(self) -> timedelta:
        return self.schedule.policy.probe_timeout

    async def probe(self, claim: Claim) -> Integration | None:
        """Probe the claimed integration; the integration after the outcome was recorded, or
        None when there was nothing to record (gone, no longer open, claim lost)."""
        try:
            integration = await self.lifecycle.get(claim.tenant_id, claim.integration_id)
        except NotFound:
            return None
        if not probing(integration):
            await self._release(claim)
            return None
        try:
            started = time.monotonic()
            error = await self._check(integration)
            seconds = time.monotonic() - started
            return await self._record(claim, integration, error, seconds)
        except asyncio.CancelledError:
            # This process stops: give the claim back so another replica probes at once.
            await asyncio.shield(self._release(claim))
            raise

    async def _check(self, integration: Integration) -> IntegrationError | None:
        """The connector's check, within the probe timeout; the classified failure, if any."""
        limit = asyncio.timeout(self.timeout.total_seconds())
        try:
            with purpose("probe"):
                async with limit:
                    connector, source = await self.providers.open(integration)
                    await connector.test_connection(source)
        except TimeoutError:
            if not limit.expired():
                raise
            return IntegrationError(
                ErrorCode.SERVICE_UNAVAILABLE,
                occurred_at=self.clock(),
                message=f"the provider did not answer the probe within "
                f"{self.timeout.total_seconds():g}s",
            )
        except Exception as exc:  # every failure is classified; none escapes as a crash
            return self.providers.classify(exc, integration, "probe")
        return None

    async def _record(
        self, claim: Claim, probed: Integration, error: IntegrationError | None, seconds: float
    ) -> Integration | None:
        now = self.clock()
        async with self.lifecycle.db.transaction() as conn:
            try:
                current = await self.lifecycle.lock(conn, claim.tenant_id, claim.integration_id)
            except NotFound:
                return None
            version = await claims.lease_version(conn, claim.tenant_id, claim.integration_id)
            if version != claim.lease_version:
                # Taken over (this process stalled past the claim, or a Sync claimed it):
                # the newer claim's outcome is the one that counts.
                log.info(
                    "probe_outcome_fenced",
                    tenant_id=claim.tenant_id,
                    integration_id=str(claim.integration_id),
                    claimed=claim.lease_version,
                    current=version,
                )
                return None
            await claims.release_claim(conn, claim.tenant_id, claim.integration_id, version)
            if (
                not probing(current)
                or current.config != probed.config
                or current.credentials_set_at != probed.credentials_set_at
            ):
                return None  # a person acted meanwhile; their action decides
            if error is None:
                verdict = self.schedule.succeeded(
                    current, now, attempt=Attempt.PROBE, what=f"probe succeeded in {seconds:.2f}s"
                )
            else:
                verdict = self.schedule.failed(current, error, now, what="probe")
            return await self.lifecycle.apply(
                conn,
                current,
                verdict.trigger,
                actor=PROBE_ACTOR,
                reason=verdict.reason,
                error=error,
                mutate=lambda i: verdict.apply(i).replace(last_error=error),
            )

    async def _release(self, claim: Claim) -> None:
        try:
            async with self.lifecycle.db.connection() as conn:
                await claims.release_claim(
                    conn, claim.tenant_id, claim.integration_id, claim.lease_version
                )
        except Exception:
            # The claim expires by itself; releasing only lets another replica start sooner.
            log.warning("probe_claim_not_released", exc_info=True)


def probing(integration: Integration) -> bool:
    """Whether the integration is waiting on probes: in ERROR with its breaker open."""
    return (
        integration.status is Status.ERROR
        and integration.breaker.open
        and integration.breaker.halt is None
    )
