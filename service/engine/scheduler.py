"""The background sync loop: every replica runs one; PostgreSQL is the only coordinator.

Each sweep claims due work (`storage.scheduler.claim_due`: `FOR UPDATE SKIP LOCKED` on the
due-time index, across tenants) within this process's concurrency limits — one for everything,
one per connector type — and runs it: a sync from the stored cursor, or, while the breaker is
open, a connection probe. Claims carry the integration's lease version, the fencing token
every write of the work must still match. Work whose replica died is claimed again once its
lease (or claim) expires, by whichever replica sweeps next. Beside the claims the loop records
lateness notices (`lateness.py`) and reconciles push channels (`push.py`), each in a task of
its own so they never hold claims up. Nothing in the loop waits for a row lock: a stalled
replica's locks are skipped, never waited on.

Sweeps run every `sweep_interval`, shortened by up to a fifth at random so replicas spread out
rather than sweep in step; `wake()` sweeps at once, `wake_at()` at a time (a push notification
made an integration due then); tests use `sweep()` directly. When a claim
filled a type's free slots, finishing work of that type wakes the loop once half its slots
are free, to claim for the types with a backlog only, so a backlog drains at the speed of the
work rather than of the sweep interval, in batches rather than one claim query per sync.
Lateness notices and the push reconciler run once per sweep interval, however often the
loop wakes.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from service.background import cancel_and_wait
from service.clock import Clock
from service.config import ConnectorLimits
from service.engine.lateness import LateNotices
from service.engine.probes import Prober
from service.engine.push import PushReconciler
from service.engine.sync import SyncEngine
from service.observability import metrics
from service.storage.claims import Claim
from service.storage.database import Database

log = structlog.get_logger(__name__)

#: Sweeps are shortened by up to this fraction at random (replicas spread out).
SWEEP_JITTER = 0.2
#: With a backlog, finishing work wakes the loop once this share of a type's slots is free.
BATCH_SHARE = 0.5


@dataclass(frozen=True)
class SchedulerSettings:
    """How the loop paces and bounds itself (from the deployment's settings)."""

    sweep_interval: timedelta
    """How often to look for due work."""
    concurrency: int
    """Syncs and probes this process runs at once, all connectors together."""
    connector_limits: ConnectorLimits
    """Syncs and probes this process runs at once per connector type."""
    sync_claim: timedelta
    """How long a claimed sync stays claimed before its run starts (its run's lease then
    takes over): the sync lease."""
    probe_claim: timedelta
    """How long a claimed probe stays claimed: the probe timeout plus the sync lease, ample
    for the probe and its write; if its replica dies, another probes after this."""


class Scheduler:
    """The loop of one process; `start()` it, `stop()` it."""

    def __init__(
        self,
        db: Database,
        syncs: SyncEngine,
        prober: Prober,
        types: tuple[str, ...],
        settings: SchedulerSettings,
        *,
        clock: Clock,
        worker: str,
        rng: random.Random | None = None,
        push: PushReconciler | None = None,
    ) -> None:
        self.db = db
        self.syncs = syncs
        self.prober = prober
        self.types = types
        self.settings = settings
        self.clock = clock
        self.worker = worker
        self.rng = rng or random.Random()
        self.late = LateNotices(db, clock)
        #: Opens, renews and stops push channels (None: not in this process).
        self.push = push
        self._pushing: asyncio.Task[int] | None = None
        #: Claims being worked on by this process, per connector type.
        self.in_flight: Counter[str] = Counter()
        #: Work in flight, and the claim each one works on.
        self._work: dict[asyncio.Task[None], Claim] = {}
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._noticing: asyncio.Task[int] | None = None
        #: Types whose last claim filled every slot it had (more may be due): finishing work
        #: of such a type wakes the loop to claim again, for these types only.
        self._backlog: set[str] = set()
        #: The next sweep claims for every type (set by `wake()` and the sweep interval).
        self._every_type = True
        self._turn = 0

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="scheduler")

    def wake(self) -> None:
        """Sweep now instead of at the next interval."""
        self._every_type = True
        self._wake.set()

    def wake_at(self, due: datetime) -> None:
        """Sweep when `due` comes (by the service's clock), if the loop runs."""
        if self._loop is None or self._stopping:
            return
        delay = max(0.0, (due - self.clock()).total_seconds())
        asyncio.get_running_loop().call_later(delay, self.wake)

    async def stop(self, grace: float = 0) -> None:
        """Stop claiming (the claim step in progress completes, so no claim is left behind
        without its work); let probes in flight finish within `grace` seconds, then cancel
        them. Every claim not turned into a run is given back, for another replica to take
        at once. Syncs in flight are the sync engine's to stop."""
        self._stopping = True
        self.wake()
        if self._loop is not None:
            # Bounded, should the database hang the claim step: then its claims expire.
            await asyncio.wait({self._loop}, timeout=max(grace, 1.0))
            await cancel_and_wait(self._loop)
        await cancel_and_wait(self._noticing)
        await cancel_and_wait(self._pushing)
        self._loop = self._noticing = self._pushing = None
        if self._work and grace > 0:
            await asyncio.wait(self._work, timeout=grace)
        work = dict(self._work)
        for task in work:
            task.cancel()
        await asyncio.gather(*work, return_exceptions=True)
        # A task cancelled before it ever ran could not give its claim back itself.
        await asyncio.gather(
            *(self._release(claim) for task, claim in work.items() if task.cancelled())
        )

    async def sweep(self) -> list[Claim]:
        """One sweep now: claim due work and start it, then notice lateness and reconcile
        push channels. Returns the claims (their work runs in the background; see `idle`)."""
        claimed = await self.claim()
        await self.late.notice()
        if self.push is not None:
            await self.push.reconcile()
        return claimed

    async def claim(self, *, backlog_only: bool = False) -> list[Claim]:
        """Claim due work within the free slots and start it in the background; with
        `backlog_only`, only for the types whose last claim filled its slots."""
        claimed = await self._claim(backlog_only)
        for claim in claimed:
            task = asyncio.create_task(
                self._run_claim(claim), name=f"scheduled-{claim.integration_id}"
            )
            self._work[task] = claim
            task.add_done_callback(lambda t: self._work.pop(t, None))
        return claimed

    async def idle(self) -> None:
        """Wait until the work claimed so far has finished (for tests)."""
        while self._work:
            await asyncio.wait(list(self._work))

    async def _run(self) -> None:
        interval = self.settings.sweep_interval.total_seconds()
        loop = asyncio.get_running_loop()
        others_due = loop.time()
        while not self._stopping:
            every_type, self._every_type = self._every_type, False
            try:
                await self.claim(backlog_only=not every_type)
            except Exception:
                # The database may be away; the next sweep tries again, and claims that were
                # taken but not started simply expire.
                log.warning("scheduler_sweep_failed", exc_info=True)
            pause = interval * (1 - SWEEP_JITTER * self.rng.random())
            # Lateness notices write events (the tenant's revision lock), so they run beside
            # the claims rather than in their way; and once per sweep interval, not at every
            # wake: a backlog wakes the loop each time work finishes, and these need no more.
            if loop.time() >= others_due:
                others_due = loop.time() + pause
                self._others()
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), pause)
            except TimeoutError:
                self._every_type = True
            self._wake.clear()

    def _others(self) -> None:
        """Start the lateness notices and the push reconciler, each unless it still runs."""
        if self._noticing is None or self._noticing.done():
            self._noticing = asyncio.create_task(self._notice(), name="late-notices")
        if self.push is not None and (self._pushing is None or self._pushing.done()):
            self._pushing = asyncio.create_task(self._reconcile(), name="push-channels")

    async def _notice(self) -> int:
        try:
            return await self.late.notice()
        except Exception:
            log.warning("late_notices_failed", exc_info=True)
            return 0

    async def _reconcile(self) -> int:
        assert self.push is not None
        try:
            return await self.push.reconcile()
        except Exception:
            log.warning("push_reconcile_failed", exc_info=True)
            return 0

    async def _claim(self, backlog_only: bool = False) -> list[Claim]:
        """Claim what is due, within the free slots: per connector type, in turns so no type
        always goes first; with `backlog_only`, only the types in the backlog (a type whose
        claim found less than its slots has nothing more due until the next sweep, or wake,
        says otherwise: a claim query costs the database its planning even when it finds
        nothing)."""
        now = self.clock()
        free = self.settings.concurrency - sum(self.in_flight.values())
        if free <= 0 or not self.types or self._stopping:
            self._backlog = set(self.types)  # not looked at: each gets a look once slots free
            return []
        types = tuple(t for t in self.types if t in self._backlog) if backlog_only else self.types
        full = {t for t in types if self._free(t) <= 0}
        self._backlog |= full  # at their limits: more may be due
        types = tuple(t for t in types if t not in full)
        if not types:
            return []
        self._turn = (self._turn + 1) % len(types)
        order = types[self._turn :] + types[: self._turn]
        found: list[Claim] = []
        async with self.db.transaction() as tx:
            for n, connector_type in enumerate(order):
                if free <= 0:
                    self._backlog.update(order[n:])  # not looked at, for want of slots
                    break
                slots = min(free, self._free(connector_type))
                got = await tx.claims.claim_due(
                    now=now,
                    connector_type=connector_type,
                    limit=slots,
                    sync_claim_until=now + self.settings.sync_claim,
                    probe_claim_until=now + self.settings.probe_claim,
                    worker=self.worker,
                )
                found += got
                free -= len(got)
                if len(got) == slots:
                    self._backlog.add(connector_type)
                else:
                    self._backlog.discard(connector_type)
        for claim in found:
            self.in_flight[claim.connector_type] += 1
            metrics.SCHEDULER_CLAIMS.labels("probe" if claim.probe else "sync").inc()
        if found:
            log.debug(
                "scheduler_claimed", count=len(found), probes=sum(1 for c in found if c.probe)
            )
        return found

    async def _run_claim(self, claim: Claim) -> None:
        try:
            if self._stopping:  # claimed just before the stop: another replica takes it
                await self._release(claim)
            elif claim.probe:
                with metrics.in_flight("probe"):
                    probed = await self.prober.probe(claim)
                if probed is None:
                    # Nothing recorded (no longer braked, a person acted…): free it at once.
                    await self._release(claim)
            else:
                started = await self.syncs.start_claimed(claim)
                if started is None:
                    await self._release(claim)  # paused since the sweep, or gone
                elif started.started:
                    await self.syncs.wait(started.run)
        except asyncio.CancelledError:
            # Stopping: a claim whose run did not start is given back at once (one that did
            # start is its run's now, and the release changes nothing).
            await asyncio.shield(self._release(claim))
            raise
        except Exception:
            log.error(
                "scheduled_work_failed",
                tenant_id=claim.tenant_id,
                integration_id=str(claim.integration_id),
                probe=claim.probe,
                exc_info=True,
            )
        finally:
            self.in_flight[claim.connector_type] -= 1
            if self._backlog and self._room(claim.connector_type):
                self._wake.set()  # for the types in the backlog (wake() is for every type)

    def _free(self, connector_type: str) -> int:
        """Slots of the type's own limit not in use."""
        return self.settings.connector_limits.of(connector_type) - self.in_flight[connector_type]

    def _room(self, connector_type: str) -> bool:
        """Whether enough slots are free for a claim to be worth its query: a share of the
        type's slots (BATCH_SHARE), at least one. Claiming each slot as it frees would cost a
        claim query (and its planning) per sync."""
        limit = min(self.settings.connector_limits.of(connector_type), self.settings.concurrency)
        free = min(
            self._free(connector_type), self.settings.concurrency - sum(self.in_flight.values())
        )
        return free >= max(1, int(limit * BATCH_SHARE))

    async def _release(self, claim: Claim) -> None:
        """Give a claim back (if it is still ours) so any replica's next sweep can take it."""
        try:
            async with self.db.connection() as tx:
                await tx.claims.release(claim)
        except Exception:
            log.warning("claim_not_released", exc_info=True)  # it expires by itself
