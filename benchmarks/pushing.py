"""g. Google Calendar push: how soon a provider change reaches ListRecords, and what an idle
calendar costs a day, each beside polling.

The figures are `benchmarks.push_figures`' (the service in this process with its callback
listener, an in-process sandbox Google, a fresh database of the bench's PostgreSQL each). The
request count's baseline is measured: the same idle calendars without push. The delay's
baseline is what polling every 15 minutes gives a change made at a random moment, computed
(measuring it would take hours): it waits for the next poll, uniformly within the interval.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.bench import Bench
from benchmarks.push_figures import (
    INTERVAL,
    SIZES,
    change_delays,
    p95,
    requests_per_idle_calendar_per_day,
)
from benchmarks.report import Figure, Goal, Section, Target

#: What the issue asks: p95 delay with push, and requests per idle calendar per day.
DELAY_TARGET_SECONDS = 2.0
REQUESTS_TARGET = 6.0


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    size = SIZES["full" if bench.sizes.name == "full" else "smoke"]
    data_dir = bench.work / "push"
    data_dir.mkdir(exist_ok=True)
    delays = await change_delays(await bench.pg.database("bench_push_delay"), data_dir, size)
    per_day = {
        push: await requests_per_idle_calendar_per_day(
            await bench.pg.database(f"bench_push_idle_{'on' if push else 'off'}"),
            data_dir,
            size,
            push=push,
        )
        for push in (True, False)
    }
    interval = INTERVAL.total_seconds()
    section = Section(
        "g",
        "Google Calendar push: change delay and an idle calendar's requests",
        "polling every 15 minutes without push (requests: measured on the same calendars; "
        "delay: computed, a change waits for the next poll)",
    )
    section.add(
        Figure(
            "p95 delay, provider change to ListRecords",
            p95(delays),
            "s",
            0.95 * interval,
            Target(Goal.BELOW, DELAY_TARGET_SECONDS),
        )
    )
    section.add(
        Figure("median delay", statistics.median(delays), "s", 0.5 * interval),
    )
    section.add(
        Figure(
            "provider requests per idle calendar per day",
            per_day[True],
            "requests",
            per_day[False],
            Target(Goal.AT_MOST, REQUESTS_TARGET),
        )
    )
    section.notes += [
        f"Delay: {len(delays)} changes, one at a time, each timed from the change at the "
        "provider to the changed record in ListRecords (read every 10 ms), with the running "
        "scheduler loop and the default push settings (a 1 s coalescing window).",
        f"Requests: {size.calendars} idle calendars over {size.days} simulated days (a moved "
        f"clock, {size.step.total_seconds() / 60:g}-minute steps) after they settled: with "
        "push, the safety net's polls every 6 h and the channel's renewal; without, a poll "
        "per interval (96 a day, a little more with the schedule's jitter).",
    ]
    section.seconds = time.monotonic() - started
    return [section]
