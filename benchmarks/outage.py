"""f. A provider outage: many integrations on a failing provider. How often the provider is
called once every brake is open (probes only), and how long it takes, once the provider is
back, for all of them to be ACTIVE again."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from uuid import UUID

import asyncpg
from integrations.v1 import integration_pb2 as pb

from benchmarks.bench import Bench, ics_integration, stub, sync
from benchmarks.report import Figure, Section
from benchmarks.stack import DEADLINE, clone_integrations

FEED = "down"
#: The default longest wait between probes: where every open brake ends up.
PROBE_MAX_SECONDS = 3600
_FAULT = {"provider": "ics", "resource": FEED, "kind": "unavailable", "times": None}


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    sizes = bench.sizes
    sb = bench.sandbox
    await sb.control("POST", f"/ics/{FEED}/generate", {"count": 3})
    database = await bench.pg.database("bench_outage")
    service = await bench.service(
        "outage",
        database,
        "--scheduler-sweep-interval",
        sizes.sweep,
        "--purpose-header",
        "X-Sandbox-Purpose",
    )
    channel, client = stub(service.target)
    try:
        template = await ics_integration(client, sb.url, FEED, "Outage", breaker_threshold=1)
        await sb.control("POST", "/faults", _FAULT)
        for _ in range(10):
            failed = (await sync(client, template.id)).integration
            if failed.breaker.state == pb.BREAKER_STATE_OPEN:
                break
        else:
            raise RuntimeError(f"the brake did not open: {failed}")
    finally:
        await channel.close()
    db = await asyncpg.connect(database)
    try:
        # Every brake open for a while: each at the longest probe interval, the next probes
        # spread over it as they would be by then.
        await db.execute(
            "UPDATE integrations SET breaker_slow_steps = 10, "
            "next_sync_at = now() + random() * make_interval(secs => $1)",
            PROBE_MAX_SECONDS,
        )
        await clone_integrations(
            db,
            UUID(template.id),
            sizes.outage - 1,
            {
                "next_sync_at": f"now() + random() * interval '{PROBE_MAX_SECONDS} seconds'",
                "late_at": "now() + interval '2 days'",
            },
        )
        await db.execute("ANALYZE integrations")
        window_start = datetime.now().astimezone()
        await asyncio.sleep(sizes.outage_window)  # the measurement window itself
        log = await sb.control("GET", f"/requests?provider=ics&resource={FEED}")
        calls = [e for e in log["requests"] if datetime.fromisoformat(e["at"]) >= window_start]
        per_minute = 60 * len(calls) / sizes.outage_window
        not_probes = sum(1 for e in calls if e["purpose"] != "probe")

        await sb.control("DELETE", f"/faults?provider=ics&resource={FEED}")
        recovered = time.monotonic()
        await db.execute("UPDATE integrations SET next_sync_at = now()")
        await _until_all_active(db, sizes.outage)
        recovery = time.monotonic() - recovered
    finally:
        await db.close()
    section = Section(
        "f",
        f"A provider outage under {sizes.outage:,} integrations",
        "none (the expected rate is one probe per integration per longest probe interval)",
    )
    expected = 60 * sizes.outage / PROBE_MAX_SECONDS
    section.add(Figure("provider requests per minute, brakes open", per_minute, "/min", expected))
    section.add(Figure("of which not probes", not_probes, "requests"))
    section.add(Figure("time for all to be ACTIVE once every probe is due", recovery, "s"))
    section.notes += [
        f"Brakes opened by real failed syncs; copies of that integration then wait for their "
        f"next probe at random within the longest probe interval ({PROBE_MAX_SECONDS} s, the "
        f"default); requests counted over {sizes.outage_window:g} s.",
        "Recovery: the provider answers again and every probe falls due at once (the worst "
        "case); with the default schedule each integration's next probe comes within the "
        "longest probe interval (1 h), so all are ACTIVE within about 1 h plus this time. "
        "Each reactivation is followed at once by a sync.",
    ]
    section.seconds = time.monotonic() - started
    return [section]


async def _until_all_active(db: asyncpg.Connection, count: int) -> None:
    """Poll the database (nothing announces "all of them") until every one is ACTIVE."""
    deadline = time.monotonic() + DEADLINE
    query = "SELECT count(*) FROM integrations WHERE status = 'ACTIVE'"
    while await db.fetchval(query) < count:
        if time.monotonic() > deadline:
            raise RuntimeError("not every integration became ACTIVE again")
        await asyncio.sleep(0.2)
