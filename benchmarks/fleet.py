"""c. A fleet: one process with many integrations due, each a tiny ICS feed, against a bare
`FOR UPDATE SKIP LOCKED` claim-and-complete loop on the same database; the CPU an idle fleet
costs; and the same fleet with 2 workers."""

from __future__ import annotations

import asyncio
import time
from uuid import UUID

import asyncpg

from benchmarks.bench import Bench, ics_integration, stub
from benchmarks.report import Figure, Goal, Section, Target
from benchmarks.stack import DEADLINE, ServiceProcess, clone_integrations
from benchmarks.stats import median

FEED = "tiny"
#: Tenants the fleet is spread over.
TENANTS = 1000
#: The service's default pool: the bare loop gets as many connections.
CONNECTIONS = 10

_DUE = "UPDATE integrations SET next_sync_at = now() - interval '1 minute'"
_NOT_DUE = (
    "UPDATE integrations SET next_sync_at = now() + interval '1 day' "
    "WHERE status IN ('ACTIVE', 'ERROR')"
)
_SUCCEEDED = "SELECT count(*) FROM sync_runs WHERE outcome = 'SUCCEEDED'"
_RUNNING = "SELECT count(*) FROM sync_runs WHERE outcome = 'RUNNING'"
#: Every integration as if it had synced the feed once: the cursor of one that did.
_SYNCED_ONCE = (
    "UPDATE integrations SET cursor = (SELECT cursor FROM integrations "
    "WHERE cursor IS NOT NULL LIMIT 1), record_count = 3 WHERE cursor IS NULL"
)
_JOBS = (
    "CREATE TABLE bench_jobs (id bigint PRIMARY KEY, due_at timestamptz NOT NULL);"
    "CREATE INDEX bench_jobs_due ON bench_jobs (due_at);"
)
_JOBS_FILL = (
    "INSERT INTO bench_jobs SELECT g, now() + interval '1 day' FROM generate_series(1, $1) g"
)
_JOBS_DUE = "UPDATE bench_jobs SET due_at = now() - interval '1 minute'"
_CLAIM = (
    "SELECT id FROM bench_jobs WHERE due_at <= now() ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED"
)
_COMPLETE = "UPDATE bench_jobs SET due_at = now() + interval '1 day' WHERE id = $1"


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    sizes = bench.sizes
    await bench.sandbox.control("POST", f"/ics/{FEED}/generate", {"count": 3})
    one_db, two_db = await asyncio.gather(
        bench.pg.database("bench_fleet_1"), bench.pg.database("bench_fleet_2")
    )
    sweep = ("--scheduler-sweep-interval", sizes.sweep)
    one, two = await asyncio.gather(
        bench.service("fleet-1", one_db, *sweep),
        bench.service("fleet-2", two_db, "--workers", "2", *sweep),
    )
    await asyncio.gather(_fleet(bench, one, one_db), _fleet(bench, two, two_db))
    db = await asyncpg.connect(one_db)
    try:
        await db.execute(_JOBS)
        await db.execute(_JOBS_FILL, sizes.fleet)
        idle = await _idle_cpu(one, sizes.idle_window)
        rates: dict[str, list[float]] = {"bare": [], "1 worker": [], "2 workers": []}
        for _ in range(bench.sizes.rounds):
            rates["bare"].append(await _bare_loop(one_db, db, sizes.fleet_window))
            rates["1 worker"].append(await _service_rate(one_db, sizes.fleet_window))
            rates["2 workers"].append(await _service_rate(two_db, sizes.fleet_window))
        # The steady state: the feeds have not changed since each one's last sync, so a
        # sync finds the digest its cursor holds and parses and writes nothing.
        await db.execute(_SYNCED_ONCE)
        unchanged = median(
            [await _service_rate(one_db, sizes.fleet_window) for _ in range(sizes.rounds)]
        )
    finally:
        await db.close()

    section = Section(
        "c",
        f"A fleet of {sizes.fleet:,} tiny ICS integrations, all due, in one process",
        f"a bare `FOR UPDATE SKIP LOCKED` claim-and-complete loop on the same database "
        f"({CONNECTIONS} connections, one job per transaction)",
    )
    one_rate, bare_rate = median(rates["1 worker"]), median(rates["bare"])
    section.add(Figure("completed syncs/s (bare: claims/s)", one_rate, "/s", bare_rate))
    section.add(Figure("completed syncs/s, one process", one_rate, "/s", None, _at_least(400)))
    section.add(
        Figure("completed syncs/s, feeds unchanged since the last sync", unchanged, "/s", None)
    )
    section.add(
        Figure(
            f"idle fleet of {sizes.fleet:,} (nothing due): CPU",
            idle,
            "%",
            None,
            Target(Goal.BELOW, 2.0),
        )
    )
    section.notes += [
        f"Each round makes every integration due, waits for the first completion, then counts "
        f"the runs that succeed in {sizes.fleet_window:g} s; the fleet is then put back to "
        "not due and the runs in flight drain before the next arm. Service settings are the "
        "defaults (sync concurrency 16, 8 per connector type, 10 database connections).",
        "Every sync in the first figures is each integration's first: the feed is fetched, "
        "parsed (icalendar) and its 3 events written. Feeds unchanged since the last sync: "
        "every integration's cursor then holds the feed's digest (copied from one that "
        "synced), as in a fleet that polls feeds which rarely change; such a sync fetches "
        "the feed, finds the same digest and writes no records.",
        f"Idle CPU: user + system time of the service process over {sizes.idle_window:g} s, "
        f"as a share of one core, with the scheduler sweeping every {sizes.sweep}.",
    ]
    workers = Section(
        "workers",
        "One process against two (`--workers 2`)",
        "the same service with one worker, in the same rounds",
    )
    workers.add(
        Figure(
            "fleet: completed syncs/s with 2 workers", median(rates["2 workers"]), "/s", one_rate
        )
    )
    section.seconds = time.monotonic() - started
    return [section, workers]


def _at_least(value: float) -> Target:
    return Target(Goal.AT_LEAST, value)


async def _fleet(bench: Bench, service: ServiceProcess, database: str) -> None:
    """One real ICS integration (ACTIVE, synced once), and copies of it, none due."""
    channel, client = stub(service.target)
    try:
        template = await ics_integration(client, bench.sandbox.url, FEED, "Holidays")
    finally:
        await channel.close()
    db = await asyncpg.connect(database)
    try:
        await _until(db, "SELECT count(*) = 1 FROM sync_runs WHERE outcome = 'SUCCEEDED'")
        await db.execute(_NOT_DUE)
        await clone_integrations(
            db,
            UUID(template.id),
            bench.sizes.fleet - 1,
            {
                # Spread over tenants as a real fleet is: every change takes its tenant's
                # revision lock until commit, so one tenant's changes commit one at a time.
                "tenant_id": f"'fleet-' || (g % {TENANTS})",
                "next_sync_at": "now() + interval '1 day'",
                "late_at": "now() + interval '2 days'",
                "cursor": "NULL",
                "record_count": "0",
            },
        )
        await db.execute("ANALYZE integrations")
    finally:
        await db.close()


async def _idle_cpu(service: ServiceProcess, window: float) -> float:
    before, begun = service.cpu_seconds(), time.monotonic()
    await asyncio.sleep(window)  # the measurement window itself
    return 100 * (service.cpu_seconds() - before) / (time.monotonic() - begun)


async def _service_rate(database: str, window: float) -> float:
    db = await asyncpg.connect(database)
    try:
        first: int = await db.fetchval(_SUCCEEDED)
        await db.execute(_DUE)
        await _until(db, f"SELECT ({_SUCCEEDED}) > {first}")
        counted: int = await db.fetchval(_SUCCEEDED)
        begun = time.monotonic()
        await asyncio.sleep(window)  # the measurement window itself
        done: int = await db.fetchval(_SUCCEEDED)
        rate = (done - counted) / (time.monotonic() - begun)
        await db.execute(_NOT_DUE)
        await _until(db, f"SELECT ({_RUNNING}) = 0")
        return rate
    finally:
        await db.close()


async def _bare_loop(database: str, db: asyncpg.Connection, window: float) -> float:
    await db.execute(_JOBS_DUE)
    completed = 0
    deadline = time.monotonic() + window

    async def worker() -> None:
        nonlocal completed
        conn = await asyncpg.connect(database)
        try:
            while time.monotonic() < deadline:
                async with conn.transaction():
                    job = await conn.fetchval(_CLAIM)
                    if job is None:
                        return
                    await conn.execute(_COMPLETE, job)
                completed += 1
        finally:
            await conn.close()

    begun = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return completed / (time.monotonic() - begun)


async def _until(db: asyncpg.Connection, query: str) -> None:
    """Poll the database (nothing announces these states) until `query` is true."""
    deadline = time.monotonic() + DEADLINE
    while not await db.fetchval(query):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for: {query}")
        await asyncio.sleep(0.05)
