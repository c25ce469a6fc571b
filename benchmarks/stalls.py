"""e. Event-loop health: Get's p99 while a big ICS feed and a big Google calendar sync, against
Get's p99 on the same service when it is idle."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from integrations.v1 import service_pb2 as api

from benchmarks.bench import (
    TOKEN,
    Bench,
    google_integration,
    ics_integration,
    stub,
    sync,
)
from benchmarks.probe import probe
from benchmarks.report import Figure, Goal, Section, Target
from benchmarks.stats import median, percentile

if TYPE_CHECKING:
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub

NAME = "stall"
#: Gets per second of the latency probe: a trickle, not a load.
RATE = 100.0


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    sizes = bench.sizes
    sb = bench.sandbox
    await sb.control("POST", "/oauth/access-tokens", {"token": TOKEN, "expires_in": 86400})
    await sb.control("PUT", f"/google/calendars/{NAME}", {"summary": "Busy"})
    await sb.control("POST", f"/google/calendars/{NAME}/generate", {"count": sizes.stall_events})
    database = await bench.pg.database("bench_stall")
    service = await bench.service("stall", database, "--scheduler", "false")
    channel, client = stub(service.target)
    request = api.GetRequest()
    idle: list[float] = []
    busy: list[float] = []
    sync_seconds: list[float] = []
    failed: list[str] = []
    try:
        probe_target = await client.Create(
            api.CreateRequest(display_name="Probe", connector_type="google_calendar")
        )
        request.id = probe_target.integration.id
        for n in range(sizes.stall_rounds):
            quiet = asyncio.Event()
            asyncio.get_running_loop().call_later(sizes.stall_window, quiet.set)
            quiet_latencies, _ = await probe(
                service.target, "Get", request.SerializeToString(), RATE, quiet
            )
            idle += quiet_latencies
            google = await google_integration(client, sb.url, NAME, f"Busy calendar {n}")
            # Verified on a small feed (verification reads the whole feed too), then big.
            await sb.control("POST", f"/ics/{NAME}/generate", {"count": 3})
            feed = await ics_integration(client, sb.url, NAME, f"Busy feed {n}")
            await sb.control("POST", f"/ics/{NAME}/generate", {"count": sizes.stall_events})
            begun = time.monotonic()
            synced = asyncio.Event()
            syncs = asyncio.create_task(_both(client, (google.id, feed.id), synced))
            busy_latencies, busy_failures = await probe(
                service.target, "Get", request.SerializeToString(), RATE, synced
            )
            busy += busy_latencies
            failed += busy_failures
            for reply in await syncs:
                if reply.run.records_upserted != sizes.stall_events:
                    raise RuntimeError(f"the busy sync did not sync everything: {reply.run}")
            sync_seconds.append(time.monotonic() - begun)
    finally:
        await channel.close()
    idle.sort()
    busy.sort()
    section = Section(
        "e",
        f"Get while a {sizes.stall_events:,}-event ICS feed and a {sizes.stall_events:,}-event "
        "Google calendar sync",
        "Get's p99 on the same service while it is idle, in alternating rounds",
    )
    section.add(
        Figure(
            "Get p99 during the syncs",
            percentile(busy, 99),
            "ms",
            percentile(idle, 99),
            Target(Goal.BELOW, 100),
        )
    )
    section.add(Figure("Get, slowest during the syncs", busy[-1], "ms", idle[-1]))
    section.add(Figure("Gets that failed during the syncs", len(failed), f"of {len(busy)}"))
    section.notes += [
        f"A probe sends {RATE:g} Gets a second, each timed from when it was due to its answer, "
        f"from the start of both syncs to the end of the later one ({median(sync_seconds):.1f} "
        f"s); the baseline probes the idle service for {sizes.stall_window:g} s.",
        "Default settings (pages of 250 for Google).",
    ]
    section.seconds = time.monotonic() - started
    return [section]


async def _both(
    client: IntegrationServiceAsyncStub, ids: tuple[str, str], ended: asyncio.Event
) -> list[api.SyncResponse]:
    """Sync both integrations at once; `ended` is set once both runs have ended."""
    try:
        return list(await asyncio.gather(*(sync(client, i) for i in ids)))
    finally:
        ended.set()
