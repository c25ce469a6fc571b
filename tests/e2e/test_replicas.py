"""Three service processes on one database share the sync work of 200 integrations.

The processes run `python -m service` with their schedulers on, short intervals and a short
lease, against the sandbox in this process, while the test keeps changing the providers' data.
Along the way one process is killed (SIGKILL) in the middle of a sync, and another is frozen
(SIGSTOP) in the middle of one until its work has been taken over, then thawed (SIGCONT). In
the end every integration holds exactly its provider's data, and the sync-run table shows that
no integration was ever synced by two processes at once.

Nothing waits for a guessed time: the test waits on sandbox gates and on conditions read from
the database, each with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import grpc
import pytest
from google.protobuf import duration_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.config import Settings
from tests.support.process import ServiceProcess
from tests.support.rpc import Stub
from tests.support.syncing import TOKEN, at
from tests.support.waiting import until as wait_until

INTEGRATIONS = 200
EVENTS = 4  # two pages of two: every sync has a "middle"
INTERVAL = timedelta(seconds=3)
LEASE = timedelta(seconds=2)
SWEEP = timedelta(seconds=0.25)
#: A deadline for every wait (never a sleep standing in for one).
SAFETY = 60.0


def calendar_id(n: int) -> str:
    return f"cal-{n:03d}"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        sandbox.state.add_access_token(TOKEN)
        for n in range(INTEGRATIONS):
            sandbox.state.google.add_calendar(calendar_id(n), f"Calendar {n}")
            for e in range(EVENTS):
                put(sandbox, n, f"e{e}", f"Event {e}")
        yield sandbox


def put(sb: Sandbox, n: int, event_id: str, summary: str) -> None:
    sb.state.google.put_event(
        calendar_id(n), event_id, summary=summary, start=at(1), end=at(1) + timedelta(hours=1)
    )


def provider(sb: Sandbox, n: int) -> dict[str, str]:
    return {e.id: e.summary for e in sb.state.google.events(calendar_id(n))}


@contextlib.asynccontextmanager
async def replicas(settings: Settings, count: int) -> AsyncIterator[list[ServiceProcess]]:
    processes = [
        ServiceProcess(
            env={
                "DATABASE_URL": settings.database_url,
                "INTEGRATIONS_ENCRYPTION_KEYS": settings.encryption_keys,
                "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true",
                "INTEGRATIONS_SYNC_PAGE_SIZE": "2",
                "INTEGRATIONS_MIN_SYNC_INTERVAL": "1s",
                "INTEGRATIONS_SYNC_LEASE": f"{LEASE.total_seconds()}s",
                "INTEGRATIONS_SCHEDULER_SWEEP_INTERVAL": f"{SWEEP.total_seconds()}s",
                "INTEGRATIONS_PURPOSE_HEADER": "X-Sandbox-Purpose",
                "INTEGRATIONS_CALLBACK_LISTEN": "off",
                "INTEGRATIONS_SHUTDOWN_GRACE": "5s",
            }
        )
        for _ in range(count)
    ]
    try:
        await asyncio.gather(*(p.start() for p in processes))
        yield processes
    finally:
        for p in processes:
            if p.proc is not None and p.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.proc.send_signal(signal.SIGCONT)  # never leave one frozen
                await p.stop(signal.SIGKILL)


async def until(
    condition: Callable[[], Awaitable[Any]],
    what: str,
    timeout: float = SAFETY,
    explain: Callable[[], Awaitable[object]] | None = None,
) -> Any:
    """Wait until `condition()` returns something truthy, reading it every 50ms (state in
    another process has no event to wait on)."""
    return await wait_until(condition, what, timeout=timeout, every=0.05, explain=explain)


async def history(db: asyncpg.Connection, ident: UUID) -> str:
    """An integration's state, runs and events, for a failure message."""
    row = await db.fetchrow(
        "SELECT status, next_sync_at, claim_expires_at, claimed_by, "
        "lease_version, consecutive_failures FROM integrations "
        "WHERE id = $1",
        ident,
    )
    runs = await db.fetch(
        "SELECT seq, worker, trigger, outcome, started_at, ended_at, pages, "
        "lease_version, note, error FROM sync_runs WHERE integration_id = $1 "
        "ORDER BY seq",
        ident,
    )
    changes = await db.fetch(
        "SELECT revision, trigger, actor, reason, occurred_at FROM events "
        "WHERE integration_id = $1 ORDER BY revision",
        ident,
    )
    return "\n".join(
        [
            f"now {datetime.now(UTC)}",
            str(dict(row or {})),
            *(str(dict(r)) for r in runs),
            *(str(dict(e)) for e in changes),
        ]
    )


def pid_of(worker: str) -> int:
    """The pid in a worker name (host:pid:tag)."""
    return int(worker.rsplit(":", 2)[1])


class Mutator:
    """Keeps changing the providers' data (renames, additions, deletions) until stopped, and
    remembers when each calendar last changed."""

    def __init__(self, sb: Sandbox, spare: set[int]) -> None:
        self.sb = sb
        self.spare = spare  # calendars the test is working on by hand
        self.changed: dict[int, datetime] = {}
        self.rng = random.Random(7)
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        step = 0
        while True:
            step += 1
            n = self.rng.randrange(INTEGRATIONS)
            if n not in self.spare:
                events = sorted(provider(self.sb, n))
                if step % 5 == 0 and len(events) > 2:
                    self.sb.state.google.delete_event(calendar_id(n), self.rng.choice(events))
                else:
                    put(self.sb, n, f"e{self.rng.randrange(EVENTS + 2)}", f"Version {step}")
                self.changed[n] = datetime.now(UTC)
            await asyncio.sleep(0.02)  # a pace of changes, not a synchronisation

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def hold_page_two(sb: Sandbox, n: int, gate: str) -> None:
    """The next sync of calendar `n` commits page 1, then its page 2 waits on `gate`.

    Syncs after the first list only changes, so the calendar gets two pages' worth of them;
    in the same step of the event loop as the faults, so no sync can fall in between."""
    sb.state.gates.open("through")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="through"), resource=calendar_id(n))
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate=gate), resource=calendar_id(n))
    for e in range(EVENTS):
        put(sb, n, f"e{e}", f"Before {gate} {e}")


async def running_run(db: asyncpg.Connection, ident: UUID) -> asyncpg.Record | None:
    return await db.fetchrow(
        "SELECT * FROM sync_runs WHERE tenant_id = 'default' AND "
        "integration_id = $1 AND outcome = 'RUNNING'",
        ident,
    )


async def held_run(sb: Sandbox, db: asyncpg.Connection, ident: UUID, gate: str) -> asyncpg.Record:
    """The run whose page 2 is parked on `gate` (page 1 committed)."""
    await asyncio.wait_for(sb.state.gates[gate].wait_for(1), SAFETY)

    async def found() -> asyncpg.Record | None:
        run = await running_run(db, ident)
        return run if run is not None and run["pages"] == 1 else None

    run: asyncpg.Record = await until(found, "the held run has committed page 1")
    return run


async def stored(db: asyncpg.Connection, ident: UUID) -> dict[str, str]:
    rows = await db.fetch(
        "SELECT record_id, data->>'summary' AS summary FROM records "
        "WHERE tenant_id = 'default' AND integration_id = $1 AND deleted_at IS NULL",
        ident,
    )
    return {r["record_id"]: r["summary"] for r in rows}


async def succeeded_since(
    db: asyncpg.Connection, ident: UUID, since: datetime, *, not_by: str = ""
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await db.fetchrow(
        "SELECT * FROM sync_runs WHERE tenant_id = 'default' AND integration_id = $1 "
        "AND outcome = 'SUCCEEDED' AND started_at > $2 AND worker <> $3 "
        "ORDER BY seq DESC LIMIT 1",
        ident,
        since,
        not_by,
    )
    return row


async def test_three_replicas_share_200_integrations_through_a_kill_and_a_freeze(
    settings: Settings, sb: Sandbox
) -> None:
    killed_at_v, frozen_at_v = 7, 11  # the calendars the test holds by hand
    async with replicas(settings, 3) as processes:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{processes[0].port}") as channel:
            stub = service_pb2_grpc.IntegrationServiceStub(channel)
            ids = await create_all(stub, sb)
        db = await asyncpg.connect(settings.database_url)
        mutator = Mutator(sb, spare={killed_at_v, frozen_at_v})
        try:
            await kill_mid_sync(sb, db, processes, ids[killed_at_v], killed_at_v)
            await freeze_mid_sync(sb, db, processes, ids[frozen_at_v], frozen_at_v)
            await mutator.stop()
            await all_converge(sb, db, ids, mutator.changed)
            await no_overlapping_runs(db)
        finally:
            await mutator.stop()
            sb.state.gates.open_all()
            await db.close()
        # SIGTERM: each remaining replica hands its runs back and exits cleanly.
        survivors = [p for p in processes if p.proc is not None and p.proc.returncode is None]
        codes = await asyncio.gather(*(p.stop(signal.SIGTERM) for p in survivors))
        assert codes == [0] * len(survivors)
    db = await asyncpg.connect(settings.database_url)
    try:
        left = await db.fetchval(
            "SELECT count(*) FROM sync_runs WHERE outcome = 'RUNNING' AND lease_expires_at > now()"
        )
        claimed = await db.fetchval(
            "SELECT count(*) FROM integrations WHERE claim_expires_at > now()"
        )
    finally:
        await db.close()
    assert (left, claimed) == (0, 0)  # no live lease or claim outlives its replica


async def create_all(stub: Stub, sb: Sandbox) -> list[UUID]:
    async def create(n: int) -> UUID:
        response = await stub.Create(
            api.CreateRequest(
                display_name=f"Calendar {n}",
                connector_type="google_calendar",
                sync_interval=duration_pb2.Duration(seconds=int(INTERVAL.total_seconds())),
                config=pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(
                        calendar_id=calendar_id(n), api_base_url=f"{sb.url}/calendar/v3"
                    )
                ),
                credentials=pb.Credentials(bearer_token=TOKEN),
            )
        )
        assert response.integration.status == pb.STATUS_ACTIVE
        return UUID(response.integration.id)

    ids: list[UUID] = []
    for start in range(0, INTEGRATIONS, 20):
        ids += await asyncio.gather(*(create(n) for n in range(start, start + 20)))
    return ids


async def kill_mid_sync(
    sb: Sandbox, db: asyncpg.Connection, processes: list[ServiceProcess], ident: UUID, n: int
) -> None:
    """SIGKILL the replica syncing calendar `n` between its pages: another replica takes the
    run over within the lease plus one sweep and continues from the cursor."""
    hold_page_two(sb, n, "killed")
    run = await held_run(sb, db, ident, "killed")
    [victim] = [p for p in processes if p.proc is not None and p.proc.pid == pid_of(run["worker"])]
    assert await victim.stop(signal.SIGKILL) == -signal.SIGKILL
    killed_at = datetime.now(UTC)
    dead = await running_run(db, ident)  # nobody renews its lease any more
    assert dead is not None and dead["id"] == run["id"]
    lease_expired_at = dead["lease_expires_at"]
    put(sb, n, "e0", "Changed after the kill")
    sb.state.gates.open("killed")  # the dead replica's request goes nowhere

    takeover = await until(
        lambda: succeeded_since(db, ident, killed_at, not_by=run["worker"]),
        "another replica has synced the killed replica's integration",
        explain=lambda: _locks(db, ident),
    )
    orphan = await db.fetchrow(
        "SELECT * FROM sync_runs WHERE tenant_id = 'default' AND id = $1", run["id"]
    )
    assert orphan["outcome"] == "CANCELLED" and orphan["pages"] == 1
    assert "lease expired" in orphan["note"]
    # Within the lease plus one sweep: the lease ran out at most LEASE after the kill (it is
    # renewed while the runner lives), and a replica took the run over a sweep after that
    # (plus the scheduling slack of busy processes).
    assert lease_expired_at <= killed_at + LEASE
    first_after = await db.fetchval(
        "SELECT min(started_at) FROM sync_runs WHERE tenant_id = 'default' AND "
        "integration_id = $1 AND seq > $2",
        ident,
        run["seq"],
    )
    assert lease_expired_at <= first_after <= lease_expired_at + SWEEP + timedelta(seconds=1)
    assert takeover["worker"] != run["worker"]
    await until(
        lambda: _same(db, sb, ident, n),
        "the killed replica's integration converged",
        explain=lambda: _diff(db, sb, ident, n),
    )


async def freeze_mid_sync(
    sb: Sandbox, db: asyncpg.Connection, processes: list[ServiceProcess], ident: UUID, n: int
) -> None:
    """SIGSTOP the replica syncing calendar `n` between its pages, with the provider's answer
    to its page 2 on its way; once another replica has taken over and synced newer data,
    SIGCONT it: its late write of the stale page is refused."""
    hold_page_two(sb, n, "frozen")
    run = await held_run(sb, db, ident, "frozen")
    [sleeper] = [p for p in processes if p.proc is not None and p.proc.pid == pid_of(run["worker"])]
    assert sleeper.proc is not None
    sleeper.proc.send_signal(signal.SIGSTOP)
    # Page 2 is answered now, with what the provider holds now; the answer waits in the frozen
    # process's socket. Once the sandbox has logged it, the provider's data moves on.
    sb.state.gates.open("frozen")

    async def answered() -> bool:
        held = [
            e
            for e in sb.state.log.entries(provider=Provider.GOOGLE, resource=calendar_id(n))
            if e.fault is FaultKind.SLOW
        ]
        return len(held) == 2  # "through" and "frozen"

    await until(answered, "the frozen replica's page 2 has been answered")
    changed_at = datetime.now(UTC)
    for e in range(EVENTS):
        put(sb, n, f"e{e}", f"Newer than the frozen page {e}")

    # Another replica takes the run over once its lease expires, finishes it from the cursor
    # (a continuation is consistent with its listing's start), and its next sync brings the
    # newer data.
    await until(
        lambda: succeeded_since(db, ident, changed_at, not_by=run["worker"]),
        "another replica has taken the frozen replica's run over",
        explain=lambda: _locks(db, ident),
    )
    await until(
        lambda: _same(db, sb, ident, n),
        "the frozen replica's integration converged",
        explain=lambda: _diff(db, sb, ident, n),
    )

    sleeper.proc.send_signal(signal.SIGCONT)

    def ended() -> list[dict[str, object]]:
        return [
            e for e in sleeper.events("sync_run_ended") if e.get("sync_run_id") == str(run["id"])
        ]

    async def sleeper_ended() -> list[dict[str, object]]:
        return ended()

    [end] = await until(sleeper_ended, "the thawed replica's runner has ended its run")
    assert end["outcome"] == "CANCELLED" and end["pages"] == 1  # it wrote nothing more
    frozen = await db.fetchrow(
        "SELECT * FROM sync_runs WHERE tenant_id = 'default' AND id = $1", run["id"]
    )
    assert (frozen["outcome"], frozen["pages"]) == ("CANCELLED", 1)
    assert await stored(db, ident) == provider(sb, n)  # the stale page never landed


async def _same(db: asyncpg.Connection, sb: Sandbox, ident: UUID, n: int) -> bool:
    return await stored(db, ident) == provider(sb, n)


async def _locks(db: asyncpg.Connection, ident: UUID) -> str:
    activity = await db.fetch(
        "SELECT pid, state, wait_event_type, wait_event, now() - xact_start AS xact_age, "
        "pg_blocking_pids(pid) AS blocked_by, left(query, 120) AS query "
        "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return "\n".join([await history(db, ident), *(str(dict(a)) for a in activity)])


async def _diff(db: asyncpg.Connection, sb: Sandbox, ident: UUID, n: int) -> str:
    return (
        f"stored {await stored(db, ident)}\nprovider {provider(sb, n)}\n{await history(db, ident)}"
    )


async def all_converge(
    sb: Sandbox, db: asyncpg.Connection, ids: list[UUID], changed: dict[int, datetime]
) -> None:
    """Every integration synced successfully after its provider's last change, and holds
    exactly the provider's data: nothing lost, nothing duplicated, nothing stale."""
    stopped = datetime.now(UTC)

    async def pending() -> list[int]:
        rows = await db.fetch(
            "SELECT integration_id, max(started_at) AS latest FROM sync_runs "
            "WHERE tenant_id = 'default' AND outcome = 'SUCCEEDED' GROUP BY integration_id"
        )
        latest = {r["integration_id"]: r["latest"] for r in rows}
        return [
            n
            for n, ident in enumerate(ids)
            if latest.get(ident) is None or latest[ident] <= changed.get(n, stopped)
        ]

    async def done() -> bool:
        return not await pending()

    await until(done, "every integration synced after its last change")
    wrong = [n for n, ident in enumerate(ids) if await stored(db, ident) != provider(sb, n)]
    assert wrong == []
    duplicates = await db.fetchval(
        "SELECT count(*) - count(DISTINCT (integration_id, record_id)) FROM records"
    )
    assert duplicates == 0


async def no_overlapping_runs(db: asyncpg.Connection) -> None:
    """From the sync-run table: per integration, each run ended before the next began."""
    overlaps = await db.fetch(
        "SELECT integration_id, seq, started_at, ended_at, next_start FROM ("
        "  SELECT integration_id, seq, started_at, ended_at,"
        "         lead(started_at) OVER (PARTITION BY tenant_id, integration_id ORDER BY seq)"
        "           AS next_start"
        "  FROM sync_runs) r "
        "WHERE next_start IS NOT NULL AND (ended_at IS NULL OR ended_at > next_start)"
    )
    details = [await history(db, r["integration_id"]) for r in overlaps]
    assert not overlaps, "\n\n".join(details)
    runs, workers = await db.fetchrow("SELECT count(*), count(DISTINCT worker) FROM sync_runs")
    assert runs >= 2 * INTEGRATIONS and workers == 3  # every replica took its share
