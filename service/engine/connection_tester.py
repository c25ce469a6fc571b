"""Test connection: run a connector's check now and move the integration by its result.

A test on CONFIGURE, ERROR or DISCONNECTED passes through TESTING (the transition table says
so); on ACTIVE and PAUSED it does not. Success makes the integration ACTIVE, clears its error
and closes its breaker (REACTIVATED when it was open); a failure records the classified error
(ERROR, or CONFIGURE for a rejected resource during a first verification, or DISCONNECTED for
rejected credentials) and counts towards the breaker like a failed sync. On a PAUSED
integration a test only reports: pausing is a person's decision.
"""

from __future__ import annotations

import time
from datetime import timedelta
from uuid import UUID

from service.clock import Clock
from service.connectors.http import purpose
from service.domain.exceptions import FailedPrecondition, TransitionNotAllowed
from service.domain.model import Integration, TestOutcome
from service.domain.schedule import Attempt
from service.domain.status import Status, Trigger
from service.domain.taxonomy import IntegrationError
from service.engine import changes
from service.engine.outcomes import Attempted, Outcomes, stale
from service.engine.providers import Providers
from service.storage.database import Database


class ConnectionTester:
    """Runs connection tests and records their outcome."""

    def __init__(
        self, db: Database, providers: Providers, outcomes: Outcomes, clock: Clock
    ) -> None:
        self.db = db
        self.providers = providers
        self.outcomes = outcomes
        self.clock = clock

    async def test(
        self, tenant: str, integration_id: UUID, *, actor: str = "api"
    ) -> tuple[Integration, TestOutcome]:
        """The TestConnection RPC: check now, answer with the result and the integration."""
        async with self.db.connection() as tx:
            current = await tx.integrations.get(tenant, integration_id)
        target = changes.allowed(current.status, Trigger.TEST)
        if not current.config_complete:
            missing = ", ".join(current.missing_config_fields) or "everything"
            raise FailedPrecondition(
                f"the configuration is incomplete (missing: {missing}); Configure it first",
                reason="CONFIG_INCOMPLETE",
                metadata={"missing_config_fields": ",".join(current.missing_config_fields)},
            )
        if target is not current.status:
            async with self.db.transaction() as tx:
                locked = await changes.lock(tx, tenant, integration_id)
                current = await changes.apply(
                    tx,
                    locked,
                    Trigger.TEST,
                    actor=actor,
                    reason="testing the connection",
                    now=self.clock(),
                )
        return await self.verify(current, actor=actor)

    async def verify_if_testing(
        self, integration: Integration, *, actor: str = "api"
    ) -> tuple[Integration, TestOutcome | None]:
        """Run the connection test of an integration that a change put in TESTING (its
        outcome moves it on: ACTIVE, or the classified error)."""
        if integration.status is not Status.TESTING:
            return integration, None
        return await self.verify(integration, actor=actor)

    async def verify(
        self, integration: Integration, *, actor: str = "api"
    ) -> tuple[Integration, TestOutcome]:
        """Run the connector's check on `integration` and record the outcome."""
        started = time.monotonic()
        error: IntegrationError | None = None
        try:
            with purpose("test"):
                connector, source = await self.providers.open(integration)
                await connector.test_connection(source)
        except Exception as exc:  # every failure is classified; none escapes as a crash
            error = self.providers.classify(exc, integration, "test_connection")
        outcome = TestOutcome(
            ok=error is None,
            error=error,
            duration=timedelta(seconds=time.monotonic() - started),
        )
        return await self._record(integration, outcome, actor), outcome

    async def _record(
        self, integration: Integration, outcome: TestOutcome, actor: str
    ) -> Integration:
        seconds = f"{outcome.duration.total_seconds():.2f}s"
        attempted = Attempted(Attempt.TEST, integration)
        async with self.db.transaction() as tx:
            held = await tx.claims.hold(integration.tenant_id, integration.id)
            if stale(held, attempted) is not None:
                # Reconfigured or reauthorized meanwhile: this result is about what was
                # replaced; the new configuration or credentials get their own test.
                return held.integration
            # The breaker counts tests like syncs: a failure is a step towards (or past) its
            # threshold, a success closes it. Coming back to ACTIVE, the data is stale: the
            # verdict makes a sync due at once.
            what = "connection test" if outcome.error else f"connection test succeeded in {seconds}"
            try:
                return await self.outcomes.record(
                    tx,
                    held.integration,
                    attempted,
                    error=outcome.error,
                    what=what,
                    actor=actor,
                    now=self.clock(),
                )
            except TransitionNotAllowed:
                # PAUSED (a test there only reports), or moved on while the test ran: the
                # result is answered but changes nothing.
                return held.integration
