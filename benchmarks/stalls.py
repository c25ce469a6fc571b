"""e. Event-loop health: Get's p99 while a big ICS feed and a big Google calendar sync, against
Get's p99 on the same service when it is idle."""

from __future__ import annotations

import asyncio
import time

from integrations.v1 import service_pb2 as api

from benchmarks import h2load
from benchmarks.bench import (
    SERVICE,
    TOKEN,
    Bench,
    google_integration,
    ics_integration,
    stub,
    sync,
)
from benchmarks.h2load import Load
from benchmarks.report import Figure, Goal, Section, Target
from benchmarks.stats import median

NAME = "stall"
#: Two connections, each sending 50 Gets a second: a steady probe, not a load.
PROBE_RPS = 50


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
    load = Load(connections=2, streams=1, seconds=sizes.stall_window, warm_up=0.1, rps=PROBE_RPS)
    idle: list[float] = []
    busy: list[float] = []
    sync_seconds: list[float] = []
    unanswered = False
    try:
        probe = await client.Create(
            api.CreateRequest(display_name="Probe", connector_type="google_calendar")
        )
        body = bench.work / "stall-get.frame"
        body.write_bytes(
            h2load.grpc_frame(api.GetRequest(id=probe.integration.id).SerializeToString())
        )
        for n in range(sizes.stall_rounds):
            log = bench.work / f"h2load-stall-idle-{n}.log"
            idle.append((await h2load.run(service.target, SERVICE + "Get", body, load, log)).p99_ms)
            google = await google_integration(client, sb.url, NAME, f"Busy calendar {n}")
            # Verified on a small feed (verification reads the whole feed too), then big.
            await sb.control("POST", f"/ics/{NAME}/generate", {"count": 3})
            feed = await ics_integration(client, sb.url, NAME, f"Busy feed {n}")
            await sb.control("POST", f"/ics/{NAME}/generate", {"count": sizes.stall_events})
            begun = time.monotonic()
            syncs = [asyncio.create_task(sync(client, i.id)) for i in (google, feed)]
            log = bench.work / f"h2load-stall-busy-{n}.log"
            during = await h2load.run(service.target, SERVICE + "Get", body, load, log)
            # No Get answered in the whole window: the loop stalled for all of it at least.
            busy.append(during.p99_ms if during.succeeded else 1000 * sizes.stall_window)
            unanswered = unanswered or not during.succeeded
            for reply in await asyncio.gather(*syncs):
                if reply.run.records_upserted != sizes.stall_events:
                    raise RuntimeError(f"the busy sync did not sync everything: {reply.run}")
            sync_seconds.append(time.monotonic() - begun)
    finally:
        await channel.close()
    section = Section(
        "e",
        f"Get while a {sizes.stall_events:,}-event ICS feed and a {sizes.stall_events:,}-event "
        "Google calendar sync",
        "Get's p99 on the same service while it is idle, in alternating rounds",
    )
    section.add(
        Figure(
            "Get p99 during the syncs",
            median(busy),
            "ms",
            median(idle),
            Target(Goal.BELOW, 100),
        )
    )
    section.notes += [
        f"Gets at a steady {2 * PROBE_RPS}/s (h2load --rps) for {sizes.stall_window:g} s from "
        f"the moment both syncs start; both syncs took {median(sync_seconds):.1f} s (median).",
        "Default settings (pages of 250 for Google).",
    ]
    if unanswered:
        section.notes.append(
            f"No Get at all was answered during a {sizes.stall_window:g} s window: the figure "
            "is that window, a lower bound of the stall."
        )
    section.seconds = time.monotonic() - started
    return [section]
