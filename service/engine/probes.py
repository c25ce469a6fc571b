"""Connection probes: the only attempts an integration gets while its breaker is open.

A probe is the connector's `test_connection` — the cheap check a person's TestConnection makes
— with a time limit: one that hangs counts as a failure (SERVICE_UNAVAILABLE) once the
policy's probe timeout has passed. The scheduler claims each probe like a sync, so one runs at
a time per integration across all replicas, and gives the claim back when a probe records
nothing. Its outcome is written only while it still counts (`outcomes.stale`: the claim still
holds and the breaker is still open), so a Pause, a Sync or a TestConnection that came in
meanwhile wins. A success closes the breaker (REACTIVATED: back to
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
from service.domain.schedule import Attempt, probing
from service.domain.taxonomy import ErrorCode, IntegrationError
from service.engine.outcomes import Attempted, Outcomes, stale
from service.engine.providers import Providers
from service.storage.claims import Claim
from service.storage.database import Database

log = structlog.get_logger(__name__)

#: The actor of the changes probes make.
PROBE_ACTOR = "probe"


class Prober:
    """Runs claimed probes and records their outcome."""

    def __init__(
        self,
        db: Database,
        providers: Providers,
        outcomes: Outcomes,
        clock: Clock,
    ) -> None:
        self.db = db
        self.providers = providers
        self.outcomes = outcomes
        self.clock = clock

    @property
    def timeout(self) -> timedelta:
        return self.outcomes.schedule.policy.probe_timeout

    async def probe(self, claim: Claim) -> Integration | None:
        """Probe the claimed integration; the integration after the outcome was recorded (the
        claim then given back with it), or None when there was nothing to record (gone, no
        longer braked, claim lost)."""
        try:
            async with self.db.connection() as tx:
                integration = await tx.integrations.get(claim.tenant_id, claim.integration_id)
        except NotFound:
            return None
        if not probing(integration):
            return None
        attempted = Attempted(Attempt.PROBE, integration, claim.lease_version)
        started = time.monotonic()
        error = await self._check(integration)
        return await self._record(claim, attempted, error, time.monotonic() - started)

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
        self, claim: Claim, attempted: Attempted, error: IntegrationError | None, seconds: float
    ) -> Integration | None:
        now = self.clock()
        async with self.db.transaction() as tx:
            try:
                held = await tx.claims.hold(claim.tenant_id, claim.integration_id)
            except NotFound:
                return None
            why = stale(held, attempted)
            if why is not None:
                log.info(
                    "probe_outcome_not_recorded",
                    tenant_id=claim.tenant_id,
                    integration_id=str(claim.integration_id),
                    why=why,
                )
                return None
            await tx.claims.release(claim)
            what = "probe" if error else f"probe succeeded in {seconds:.2f}s"
            return await self.outcomes.record(
                tx,
                held.integration,
                attempted,
                error=error,
                what=what,
                actor=PROBE_ACTOR,
                now=now,
            )
