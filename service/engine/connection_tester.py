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
from service.domain.schedule import Attempt, Schedule
from service.domain.status import Action, Disallowed, Status, Trigger, transition
from service.domain.taxonomy import IntegrationError
from service.engine.lifecycle import Lifecycle
from service.engine.providers import Providers

#: What to do instead, when a status does not allow a connection test.
TEST_HINTS: dict[Status, str] = {
    Status.DRAFT: "Configure it first: there is nothing to test yet.",
}


class ConnectionTester:
    """Runs connection tests and records their outcome."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        providers: Providers,
        clock: Clock,
        *,
        schedule: Schedule | None = None,
    ) -> None:
        self.lifecycle = lifecycle
        self.providers = providers
        self.clock = clock
        self.schedule = schedule or Schedule()

    async def test(
        self, tenant: str, integration_id: UUID, *, actor: str = "api"
    ) -> tuple[Integration, TestOutcome]:
        """The TestConnection RPC: check now, answer with the result and the integration."""
        current = await self.lifecycle.get(tenant, integration_id)
        target = transition(current.status, Trigger.TEST)
        if isinstance(target, Disallowed):
            raise TransitionNotAllowed(
                Action.TEST_CONNECTION,
                current.status,
                target.allowed,
                TEST_HINTS.get(current.status, ""),
            )
        if not current.config_complete:
            missing = ", ".join(current.missing_config_fields) or "everything"
            raise FailedPrecondition(
                f"the configuration is incomplete (missing: {missing}); Configure it first",
                reason="CONFIG_INCOMPLETE",
                metadata={"missing_config_fields": ",".join(current.missing_config_fields)},
            )
        if target is not current.status:
            current = await self.lifecycle.change(
                tenant, integration_id, Trigger.TEST, actor=actor, reason="testing the connection"
            )
        return await self.verify(current, actor=actor)

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
            ok=error is None, error=error, duration=timedelta(seconds=time.monotonic() - started)
        )
        return await self._record(integration, outcome, actor), outcome

    async def _record(
        self, integration: Integration, outcome: TestOutcome, actor: str
    ) -> Integration:
        now = self.clock()
        error = outcome.error
        seconds = f"{outcome.duration.total_seconds():.2f}s"
        async with self.lifecycle.db.transaction() as conn:
            current = await self.lifecycle.lock(conn, integration.tenant_id, integration.id)
            if current.config != integration.config:
                return current  # reconfigured meanwhile: the new configuration gets its own test
            if current.credentials_set_at != integration.credentials_set_at:
                # Reauthorized meanwhile: this result is about the credentials it replaced (a
                # rejected old token must not disconnect the new ones); theirs is tested anew.
                return current
            # The breaker counts tests like syncs: a failure is a step towards (or past) its
            # threshold, a success closes it. Coming back to ACTIVE, the data is stale: the
            # verdict makes a sync due at once.
            if error is None:
                verdict = self.schedule.succeeded(
                    current,
                    now,
                    what=f"connection test succeeded in {seconds}",
                    attempt=Attempt.TEST,
                )
            else:
                verdict = self.schedule.failed(current, error, now, what="connection test")
            try:
                return await self.lifecycle.apply(
                    conn,
                    current,
                    verdict.trigger,
                    actor=actor,
                    reason=verdict.reason,
                    mutate=lambda i: verdict.apply(i).replace(last_error=error),
                    error=error,
                )
            except TransitionNotAllowed:
                # PAUSED (a test there only reports), or moved on while the test ran: the
                # result is answered but changes nothing.
                return current
