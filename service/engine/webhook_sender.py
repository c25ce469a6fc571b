"""The webhook sender: every replica runs one; PostgreSQL is the only coordinator.

Deliveries are written by the events' own statements (the outbox), so an event that committed
has its deliveries, and one that rolled back has none. Each sweep claims due deliveries
(`FOR UPDATE SKIP LOCKED` across tenants, earliest due first) within this process's
concurrency, and sends each once: a POST signed per Standard Webhooks, through the same HTTP
client and network guard as provider requests. A claim moves the delivery's lease version
on, and the attempt's outcome is written only while it still holds: a replica that stalled
past its claim writes nothing, and the replica that took the delivery over decides. A replica
that died mid-attempt leaves its claim to expire, and another sends the delivery again: at
least once, never lost. Receivers deduplicate on webhook-id.

A failed attempt is retried with exponential backoff and jitter until the retry horizon, then
given up. An endpoint whose attempts keep failing for `disable_after` is disabled, with the
reason on the endpoint and a webhook.endpoint_disabled event to the tenant's other endpoints.

The webhook-timestamp is the real time of the attempt (`wall_clock`), whatever clock schedules
the work: receivers compare it with their own clocks to refuse replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from dataclasses import dataclass
from datetime import timedelta
from uuid import uuid4

import structlog

from service.background import cancel_and_wait
from service.clock import Clock, utc_now
from service.connectors.http import HttpClient, redact
from service.connectors.provider_failures import ProviderFailure
from service.domain import webhook_signatures, webhooks
from service.domain.webhooks import Attempt, DeliveryState, RetryPolicy
from service.storage.database import Database
from service.storage.webhooks import Claimed

log = structlog.get_logger(__name__)

#: Sweeps are shortened by up to this fraction at random (replicas spread out).
SWEEP_JITTER = 0.2


@dataclass(frozen=True)
class SenderSettings:
    """How the sender paces and bounds itself (from the deployment's settings)."""

    sweep_interval: timedelta
    """How often to look for due deliveries."""
    concurrency: int
    """Deliveries this process sends at once."""
    claim: timedelta
    """How long a claimed delivery stays claimed: the request timeout plus ample time to
    write the outcome. If the replica dies, another sends the delivery after this."""
    policy: RetryPolicy
    """Retries, the horizon, and when an endpoint is disabled."""


class WebhookSender:
    """The delivery loop of one process; `start()` it, `stop()` it."""

    def __init__(
        self,
        db: Database,
        http: HttpClient,
        settings: SenderSettings,
        *,
        clock: Clock,
        worker: str,
        wall_clock: Clock = utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.http = http
        self.settings = settings
        self.clock = clock
        self.wall_clock = wall_clock
        self.worker = worker
        self.rng = rng or random.Random()
        self._work: dict[asyncio.Task[None], Claimed] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        self._backlog = False

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="webhook-sender")

    def wake(self) -> None:
        """Sweep now instead of at the next interval."""
        self._wake.set()

    async def stop(self, grace: float = 0) -> None:
        """Stop claiming; let attempts in flight finish within `grace` seconds, then cancel
        them. A cancelled attempt's claim is given back, so another replica sends it at once
        (the receiver may then see it twice: at least once)."""
        self._stopping = True
        self.wake()
        await cancel_and_wait(self._loop)
        self._loop = None
        if self._work and grace > 0:
            await asyncio.wait(self._work, timeout=grace)
        work = dict(self._work)
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        await asyncio.gather(
            *(self._release(claimed) for task, claimed in work.items() if task.cancelled())
        )

    async def sweep(self) -> list[Claimed]:
        """Claim due deliveries within the free slots and send them in the background."""
        free = self.settings.concurrency - len(self._work)
        if free <= 0 or self._stopping:
            self._backlog = True
            return []
        now = self.clock()
        async with self.db.connection() as tx:
            claimed = await tx.webhooks.claim_due(
                now=now, limit=free, claim_until=now + self.settings.claim, worker=self.worker
            )
        self._backlog = len(claimed) == free
        for item in claimed:
            task = asyncio.create_task(self._send(item), name=f"webhook-{item.delivery.event_id}")
            self._work[task] = item
            task.add_done_callback(self._done)
        return claimed

    async def idle(self) -> None:
        """Wait until the deliveries claimed so far have been attempted (for tests)."""
        while self._work:
            await asyncio.wait(list(self._work))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._work.pop(task, None)
        if self._backlog and not self._stopping:
            self.wake()

    async def _run(self) -> None:
        interval = self.settings.sweep_interval.total_seconds()
        while not self._stopping:
            try:
                await self.sweep()
            except Exception:
                # The database may be away; the next sweep tries again, and claims that were
                # taken but not sent simply expire.
                log.warning("webhook_sweep_failed", exc_info=True)
            pause = interval * (1 - SWEEP_JITTER * self.rng.random())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            self._wake.clear()

    async def _send(self, claimed: Claimed) -> None:
        try:
            attempt = await self.attempt(claimed)
            await self._record(claimed, attempt)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The outcome could not be written (the database went away): the claim expires
            # and the delivery is attempted again.
            log.error(
                "webhook_delivery_failed",
                tenant_id=claimed.delivery.tenant_id,
                endpoint_id=str(claimed.delivery.endpoint_id),
                event_id=str(claimed.delivery.event_id),
                exc_info=True,
            )

    async def attempt(self, claimed: Claimed) -> Attempt:
        """POST the delivery once, signed; what happened (never raises for the receiver's
        failures)."""
        d = claimed.delivery
        body = json.dumps(d.body(), separators=(",", ":")).encode()
        timestamp = int(self.wall_clock().timestamp())
        headers = {
            "Content-Type": "application/json",
            **webhook_signatures.headers(claimed.secrets, str(d.event_id), timestamp, body),
        }
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            response = await self.http.post(
                claimed.url, body=body, headers=headers, what="the webhook receiver"
            )
            status, error = response.status, _error_of(response.status)
        except ProviderFailure as failure:
            status, error = 0, failure.message
        latency = timedelta(seconds=loop.time() - started)
        return Attempt(len(d.attempts) + 1, self.clock(), status, latency, error)

    async def _record(self, claimed: Claimed, attempt: Attempt) -> None:
        """Write the attempt's outcome, fenced on the claim; count it in the endpoint's
        failing streak, and disable the endpoint when the streak is long enough."""
        d = claimed.delivery
        policy = self.settings.policy
        fields = {
            "tenant_id": d.tenant_id,
            "endpoint_id": str(d.endpoint_id),
            "event_id": str(d.event_id),
            "event_type": d.event_type.value,
            "attempt": attempt.number,
            "status": attempt.status_code,
        }
        async with self.db.transaction() as tx:
            if attempt.ok:
                if not await tx.webhooks.record_attempt(
                    claimed, attempt, state=DeliveryState.DELIVERED, next_attempt_at=None
                ):
                    log.info("webhook_claim_lost", **fields)
                    return
                await tx.webhooks.endpoint_succeeded(d.tenant_id, d.endpoint_id)
                log.debug("webhook_delivered", **fields)
                return
            next_at = policy.next_attempt(attempt.number, d.created_at, attempt.at, self.rng)
            state = DeliveryState.PENDING if next_at is not None else DeliveryState.FAILED
            if not await tx.webhooks.record_attempt(
                claimed, attempt, state=state, next_attempt_at=next_at
            ):
                log.info("webhook_claim_lost", **fields)
                return
            log.info(
                "webhook_attempt_failed", error=attempt.error, given_up=next_at is None, **fields
            )
            endpoint = await tx.webhooks.endpoint_failed(d.tenant_id, d.endpoint_id, attempt.at)
            if endpoint is None or endpoint.failing_since is None:
                return
            if policy.disables(endpoint.failing_since, attempt.at):
                reason = webhooks.disabled_reason(endpoint.failing_since, attempt.at, attempt)
                if await tx.webhooks.disable(
                    endpoint,
                    reason,
                    attempt.at,
                    event_id=uuid4(),
                    payload=webhooks.endpoint_disabled(endpoint, reason, attempt.at),
                ):
                    log.warning(
                        "webhook_endpoint_disabled",
                        tenant_id=d.tenant_id,
                        endpoint_id=str(d.endpoint_id),
                        url=redact(endpoint.url),
                        reason=reason,
                    )

    async def _release(self, claimed: Claimed) -> None:
        try:
            async with self.db.connection() as tx:
                await tx.webhooks.release(claimed)
        except Exception:
            log.warning("webhook_claim_not_released", exc_info=True)  # it expires by itself


def _error_of(status: int) -> str:
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        return f"HTTP {status}: redirects are not followed; configure the final URL"
    return f"HTTP {status}"
