"""Syncs: starting a run (or finding the one already running), running it in the background,
waiting for it, and reading runs back (records are read through `record_feed`).

At most one run per integration is RUNNING, whichever replica started it: a run starts in the
same transaction as the integration's SYNC change, under its row lock, and a unique index on
running runs refuses a second one. A runner owns its run through a lease that it renews; a
RUNNING run with an expired lease belongs to a process that died, and the next Sync (or the
scheduler) ends it and starts over from the stored cursor.

Every run holds a claim of its integration: the integration's `lease_version` when it started
(a Sync RPC takes a new one; the scheduler brings the one it claimed). It is the fencing token
of the run's writes: a runner that stalled while its work was taken over finds a newer version
and writes nothing (see `outcomes.stale` and `SyncRows.commit_page`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from uuid import UUID, uuid4

import structlog

from service.clock import Clock
from service.domain import schedule
from service.domain.exceptions import NotFound, TransitionNotAllowed
from service.domain.model import Integration
from service.domain.records import RecordLimits
from service.domain.status import SyncState, Trigger
from service.domain.sync import SyncOutcome, SyncRun, SyncTrigger
from service.engine import changes
from service.engine.outcomes import Outcomes
from service.engine.providers import Providers
from service.engine.sync_runner import Opened, SyncRunner
from service.storage.claims import Claim
from service.storage.database import Database, Tx
from service.storage.sync import StartHold

log = structlog.get_logger(__name__)

#: How often `wait` looks at a run that another replica is running.
POLL_INTERVAL = 0.5


@dataclass(frozen=True)
class SyncStart:
    """A Sync's answer: the run, the integration, and whether this call started the run."""

    run: SyncRun
    integration: Integration
    started: bool


class SyncEngine:
    """Starts sync runs and runs them as tasks of this process."""

    def __init__(
        self,
        db: Database,
        providers: Providers,
        outcomes: Outcomes,
        *,
        lease: timedelta,
        clock: Clock,
        worker: str = "",
        limits: RecordLimits | None = None,
        commit_records: int = 2500,
    ) -> None:
        self.db = db
        #: What one record may be, and how many are written per transaction.
        self.limits = limits or RecordLimits()
        self.commit_records = commit_records
        self.providers = providers
        self.outcomes = outcomes
        self.lease = lease
        self.clock = clock
        #: Who runs the runs started here (recorded on each run, for operators).
        self.worker = worker
        #: Set when the process stops: runners hand their run back after the current page.
        self.stopping = asyncio.Event()
        self._tasks: dict[UUID, asyncio.Task[SyncRun]] = {}

    async def start(
        self,
        tenant: str,
        integration_id: UUID,
        *,
        trigger: SyncTrigger = SyncTrigger.MANUAL,
        actor: str = "api",
    ) -> SyncStart:
        """Start a run now, or return the one already running. FAILED_PRECONDITION when the
        integration's status does not allow syncing, naming what to do instead."""
        started = await self._start(tenant, integration_id, trigger, actor, claimed=None)
        assert started is not None, "an unclaimed start is never lost"
        return started

    async def start_claimed(self, claim: Claim, *, actor: str = "scheduler") -> SyncStart | None:
        """Start the sync the scheduler claimed; None when the claim was lost to another worker
        or the integration may no longer sync (the scheduler then gives the claim back)."""
        try:
            return await self._start(
                claim.tenant_id, claim.integration_id, None, actor, claimed=claim.lease_version
            )
        except (NotFound, TransitionNotAllowed):
            return None  # gone, or paused (reconfigured…) since the sweep

    async def _start(
        self,
        tenant: str,
        integration_id: UUID,
        trigger: SyncTrigger | None,
        actor: str,
        *,
        claimed: int | None,
    ) -> SyncStart | None:
        async with self.db.transaction() as tx:
            hold = await tx.sync.hold_for_start(tenant, integration_id)
            current = hold.integration
            # The time once the lock is ours: a run that waited for its predecessor's last
            # commit must not be recorded as starting before that one ended.
            now = self.clock()
            changes.allowed(current.status, Trigger.SYNC)
            if claimed is not None and hold.lease_version != claimed:
                return None  # the claim expired and another worker claimed it since
            running = await self._running(tx, hold)
            if running is not None and not self._orphaned(running):
                if claimed is not None:
                    await tx.claims.take(tenant, integration_id, claimed)
                return SyncStart(running, current, started=False)
            trigger = trigger or schedule.sync_trigger(current)
            if running is not None:
                await tx.sync.finish_run(
                    running,
                    SyncOutcome.CANCELLED,
                    now,
                    note="its process stopped without ending it (the lease "
                    "expired); a new run continues from the cursor",
                )
                log.warning(
                    "sync_run_taken_over",
                    tenant_id=tenant,
                    integration_id=str(integration_id),
                    sync_run_id=str(running.id),
                )
            # A person's Sync (no claim) claims the integration now: a newer version fences
            # whatever held it before (a pending scheduled sync, a probe in flight, a stalled
            # runner). The scheduler's claim turns into the run.
            run = await tx.sync.start_run(
                tenant,
                integration_id,
                uuid4(),
                trigger,
                now,
                now + self.lease,
                claimed=claimed,
                worker=self.worker,
            )
            if run is None:
                return None  # the claim was lost (checked above under the same lock)
            integration = await changes.apply(
                tx,
                current,
                Trigger.SYNC,
                actor=actor,
                reason=f"sync run #{run.seq} started ({trigger.value.lower()})",
                now=now,
                # Should this process die, the schedule retries within the lease (plus a
                # sweep): the run's end sets the real next time.
                mutate=lambda i: i.replace(
                    sync_state=SyncState.SYNCING,
                    next_sync_at=min(i.next_sync_at or now + self.lease, now + self.lease),
                ),
            )
        self._spawn(run, integration, actor, Opened(hold.cursor, hold.credentials))
        return SyncStart(run, integration, started=True)

    @staticmethod
    async def _running(tx: Tx, hold: StartHold) -> SyncRun | None:
        """The run RUNNING now, locked (read only when there is one)."""
        if hold.running is None:
            return None
        integration = hold.integration
        return await tx.sync.running_run(integration.tenant_id, integration.id)

    def _spawn(self, run: SyncRun, integration: Integration, actor: str, opened: Opened) -> None:
        runner = SyncRunner(
            self.db,
            self.providers,
            self.outcomes,
            run=run,
            integration=integration,
            actor=actor,
            lease=self.lease,
            clock=self.clock,
            stopping=self.stopping,
            limits=self.limits,
            commit_records=self.commit_records,
            opened=opened,
        )
        task = asyncio.create_task(runner.run(), name=f"sync-run-{run.id}")
        self._tasks[run.id] = task
        task.add_done_callback(lambda t: self._finished(run, t))

    def _finished(self, run: SyncRun, task: asyncio.Task[SyncRun]) -> None:
        self._tasks.pop(run.id, None)
        if not task.cancelled() and task.exception() is not None:
            # The runner could not even record its end (the database went away); the lease
            # runs out and the next Sync takes over.
            log.error(
                "sync_run_crashed",
                tenant_id=run.tenant_id,
                sync_run_id=str(run.id),
                integration_id=str(run.integration_id),
                exc_info=task.exception(),
            )

    async def wait(self, run: SyncRun, timeout: float | None = None) -> SyncRun:
        """The run once it has ended, or as it stands when `timeout` seconds have passed."""
        task = self._tasks.get(run.id)
        if task is not None:
            # asyncio.wait never cancels what it waits for: a caller that stops waiting
            # (deadline, disconnect) leaves the run be.
            await asyncio.wait({task}, timeout=timeout)
            if task.done() and not task.cancelled() and task.exception() is None:
                return task.result()
            return await self._reread(run)
        # Run by another replica: look at it now and then.
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            current = await self._reread(run)
            left = None if deadline is None else deadline - loop.time()
            if not current.running or (left is not None and left <= 0) or self._orphaned(current):
                return current
            await asyncio.sleep(POLL_INTERVAL if left is None else min(POLL_INTERVAL, left))

    def _orphaned(self, run: SyncRun) -> bool:
        """RUNNING with an expired lease: its process died; the next Sync takes it over."""
        expires = run.lease_expires_at
        return run.running and expires is not None and expires <= self.clock()

    async def _reread(self, run: SyncRun) -> SyncRun:
        async with self.db.connection() as tx:
            return await tx.sync.get_run(run.tenant_id, run.id) or run

    async def close(self, grace: float = 0) -> None:
        """Stop every run of this process. Each commits the page it is fetching if that takes
        less than `grace` seconds, then hands the rest back; what is still running after that
        is cancelled (its page dropped). Either way the run ends CANCELLED ("shut down") and
        the integration is due at once, for whichever replica sweeps next."""
        self.stopping.set()
        tasks = list(self._tasks.values())
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- reading ---------------------------------------------------------------------

    async def runs(
        self, tenant: str, integration_id: UUID, *, before_seq: int | None, limit: int
    ) -> list[SyncRun]:
        """An integration's runs, newest first."""
        async with self.db.connection() as tx:
            await tx.integrations.get(tenant, integration_id)  # NOT_FOUND first
            return await tx.sync.list_runs(
                tenant, integration_id, before_seq=before_seq, limit=limit
            )

    async def get_run(self, tenant: str, run_id: UUID) -> SyncRun:
        async with self.db.connection() as tx:
            run = await tx.sync.get_run(tenant, run_id)
        if run is None:
            raise NotFound("sync run", str(run_id))
        return run
