"""d. WatchStatus fan-out: many subscribers, changes at a steady rate, against a bare
grpc.aio server streaming the same pre-built messages to as many streams."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from benchmarks.bare import BROADCAST
from benchmarks.bench import SERVICE, Bench, WatchCase, encoded, stub
from benchmarks.report import Figure, Goal, Section, Target
from benchmarks.stack import Child, rss_bytes

if TYPE_CHECKING:
    pass

#: How long subscribers wait for the last changes after the producer stopped.
DRAIN = 10.0


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    database = await bench.pg.database("bench_watch")
    service = await bench.service("watch", database, "--scheduler", "false")
    channel, client = stub(service.target)
    subject = (
        await client.Create(
            api.CreateRequest(display_name="Watched", connector_type="google_calendar")
        )
    ).integration
    snapshot = api.WatchStatusResponse(snapshot=subject)
    complete = api.WatchStatusResponse(
        snapshot_complete=api.SnapshotComplete(revision=subject.revision)
    )
    bare, bare_target = await bench.bare(
        "watch-bare",
        {
            "stream": {
                "method": SERVICE + "WatchStatus",
                "prelude": [encoded(snapshot), encoded(complete)],
            }
        },
    )
    bare_channel = grpc.aio.insecure_channel(bare_target)
    section = Section(
        "d",
        "WatchStatus fan-out",
        "a bare grpc.aio server streaming the same pre-built messages to as many streams",
    )
    try:
        for case in bench.sizes.watch:

            async def change(n: int) -> None:
                await client.Configure(api.ConfigureRequest(id=subject.id, display_name=f"W {n}"))

            async def broadcast(n: int) -> None:
                event = pb.IntegrationEvent(revision=n, integration_id=subject.id)
                event.occur_time.CopyFrom(_now())
                message = api.WatchStatusResponse(change=subject, event=event)
                call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = bare_channel.unary_unary(
                    BROADCAST
                )
                await call(message.SerializeToString())

            base = await _case(bench, bare_target, bare.pid, case, broadcast)
            mine = await _case(bench, service.target, service.pid, case, change)
            _figures(section, case, mine, base)
            section.notes.append(
                f"{case.subscribers:,} subscribers: changes were made at {mine['rate']:.1f}/s "
                f"(asked {case.rate:g}/s; the bare server's at {base['rate']:.1f}/s)."
            )
    finally:
        await bare_channel.close()
        await channel.close()
    section.notes += [
        "Subscribers run in a process of their own (grpc.aio, ~100 streams per connection); "
        "latency is receipt time minus the commit time the change carries "
        "(`event.occur_time`); each change is one Configure of the display name.",
        "Memory per idle stream: the server's resident memory with every stream open and its "
        "snapshot sent, less before, divided by the streams.",
    ]
    section.seconds = time.monotonic() - started
    return [section]


def _now() -> Timestamp:
    stamp = Timestamp()
    stamp.GetCurrentTime()
    return stamp


async def _case(
    bench: Bench,
    target: str,
    pid: int,
    case: WatchCase,
    produce: Callable[[int], Awaitable[None]],
) -> dict[str, float]:
    changes = max(1, round(case.rate * case.seconds))
    watchers = Child(f"watchers-{target.rsplit(':', 1)[1]}-{case.subscribers}", bench.work)
    before = rss_bytes(pid)
    await watchers.spawn(
        "-m",
        "benchmarks.watchers",
        target,
        str(case.subscribers),
        str(changes),
        str(DRAIN),
        stdin=True,
    )
    line = await watchers.wait_for_line(lambda s: s.startswith("subscribed "), "subscriptions")
    subscribed = int(line.split()[1])
    per_stream = (rss_bytes(pid) - before) / max(1, subscribed)
    begun = time.monotonic()
    for n in range(changes):
        pause = begun + n / case.rate - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)  # the producer's pace, not a synchronisation
        await produce(n + 1)
    produced = time.monotonic() - begun
    await watchers.tell("done")
    line = await watchers.wait_for_line(lambda s: s.startswith("{"), "summary")
    await watchers.stop()
    summary: dict[str, float] = json.loads(line)
    summary["per_stream_kb"] = per_stream / 1024
    summary["changes"] = changes
    summary["all"] = 1.0 if summary["complete"] == case.subscribers else 0.0
    summary["subscribed"] = subscribed
    summary["rate"] = (changes - 1) / produced if changes > 1 and produced > 0 else case.rate
    return summary


def _figures(
    section: Section, case: WatchCase, mine: dict[str, float], base: dict[str, float]
) -> None:
    name = f"{case.subscribers:,} subscribers at {case.rate:g}/s"
    section.add(
        Figure(
            f"{name}: p99 commit→receipt",
            mine["p99_ms"],
            "ms",
            base["p99_ms"],
            Target(Goal.BELOW, case.p99_target_ms),
        )
    )
    section.add(Figure(f"{name}: p50 commit→receipt", mine["p50_ms"], "ms", base["p50_ms"]))
    section.add(
        Figure(
            f"{name}: every subscriber got all {int(mine['changes'])} changes "
            f"({int(mine['subscribed']):,} subscribed, {int(mine['complete']):,} got them all; "
            f"baseline {int(base['subscribed']):,} and {int(base['complete']):,})",
            mine["all"],
            "yes/no",
            base["all"],
            Target(Goal.TRUE),
        )
    )
    section.add(
        Figure(
            f"{name}: memory per idle stream",
            mine["per_stream_kb"],
            "KB",
            base["per_stream_kb"],
            Target(Goal.BELOW, 30),
        )
    )
