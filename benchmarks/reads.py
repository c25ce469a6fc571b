"""a. Get of a realistic integration and List of a page of 100, under h2load, against a bare
grpc.aio server answering the very same bytes; and the same Get with 2 workers."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

import asyncpg
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from benchmarks import h2load
from benchmarks.bench import (
    SERVICE,
    TOKEN,
    Bench,
    google_integration,
    raw_call,
    stub,
    sync,
)
from benchmarks.h2load import LoadResult
from benchmarks.report import Figure, Goal, Section, Target
from benchmarks.stack import SandboxProcess, clone_integrations
from benchmarks.stats import median

if TYPE_CHECKING:
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub

LIST_PAGE = 100


@dataclass(frozen=True)
class Arm:
    """One server under load: its name and target."""

    name: str
    target: str


async def run(bench: Bench) -> list[Section]:
    started = time.monotonic()
    sb = bench.sandbox
    await sb.control("POST", "/oauth/access-tokens", {"token": TOKEN, "expires_in": 86400})
    await sb.control("PUT", "/google/calendars/reads", {"summary": "Team"})
    database = await bench.pg.database("bench_reads")
    one = await bench.service("reads-1", database, "--scheduler", "false")
    two = await bench.service("reads-2", database, "--scheduler", "false", "--workers", "2")
    channel, client = stub(one.target)
    try:
        subject = await realistic(client, sb)
        conn = await asyncpg.connect(database)
        try:  # a tenant of more than a page: copies of the same row (new ids)
            await clone_integrations(conn, UUID(subject.id), LIST_PAGE * 3 // 2, {})
        finally:
            await conn.close()
        get = api.GetRequest(id=subject.id)
        listing = api.ListRequest(page_size=LIST_PAGE)
        get_reply = await raw_call(channel, "Get", get.SerializeToString())
        list_reply = await raw_call(channel, "List", listing.SerializeToString())
    finally:
        await channel.close()
    _, bare = await bench.bare(
        "reads-bare",
        {"unary": {SERVICE + "Get": _b64(get_reply), SERVICE + "List": _b64(list_reply)}},
    )
    arms = [Arm("bare", bare), Arm("1 worker", one.target), Arm("2 workers", two.target)]
    gets = await _rounds(bench, arms, "Get", get.SerializeToString(), len(get_reply))
    lists = await _rounds(bench, arms[:2], "List", listing.SerializeToString(), len(list_reply))

    section = Section(
        "a",
        "Get and List under load",
        "a bare grpc.aio server (same loop, own process) answering the same pre-encoded bytes",
    )
    load = bench.sizes.load
    section.notes += [
        f"h2load -c {load.connections} -m {load.streams}, {load.seconds:g} s per round after "
        f"{load.warm_up:g} s of warm-up, {bench.sizes.rounds} rounds per server, alternating.",
        f"Get answers {len(get_reply)} bytes: an ERROR Google Calendar integration with its "
        f"config, last error and breaker; List answers {LIST_PAGE} of them "
        f"({len(list_reply)} bytes).",
        "The service logs every RPC at info level, to a file, as a deployment would.",
        "Every Get reads PostgreSQL, so that a caller whose calls land on different replicas "
        "reads its own writes; the Get targets would need a cache instead, which "
        "docs/SCALING.md explains we chose not to build. The integrations do not change "
        "during the rounds, so their converted views are reused, as on a dashboard's re-reads.",
    ]
    _figures(section, "Get", gets, "1 worker", targets=True)
    _figures(section, "List of 100", lists, "1 worker", targets=False)
    workers = Section(
        "workers",
        "One process against two (`--workers 2`)",
        "the same service with one worker, in the same rounds",
    )
    workers.add(
        Figure(
            "Get: requests/s with 2 workers",
            median([r.requests_per_s for r in gets["2 workers"]]),
            "req/s",
            median([r.requests_per_s for r in gets["1 worker"]]),
        )
    )
    workers.add(
        Figure(
            "Get: p99 with 2 workers",
            median([r.p99_ms for r in gets["2 workers"]]),
            "ms",
            median([r.p99_ms for r in gets["1 worker"]]),
        )
    )
    workers.notes.append(
        "SO_REUSEPORT spreads h2load's connections over the workers by a hash of their "
        "addresses, so the split is rarely even."
    )
    section.seconds = time.monotonic() - started
    return [section, workers]


async def realistic(client: IntegrationServiceAsyncStub, sandbox: SandboxProcess) -> pb.Integration:
    """An integration with everything a Get shows: config, credentials, a last error and a
    breaker counting it (verified, then one sync the provider failed)."""
    created = await google_integration(client, sandbox.url, "reads", "Team calendar")
    fault = {"provider": "google", "resource": "reads", "kind": "unavailable", "times": 1}
    await sandbox.control("POST", "/faults", fault)
    failed = (await sync(client, created.id)).integration
    if failed.status != pb.STATUS_ERROR or not failed.last_error.code:
        raise RuntimeError(f"the bench's integration did not fail as planned: {failed}")
    return failed


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def _rounds(
    bench: Bench, arms: list[Arm], method: str, request: bytes, reply_size: int
) -> dict[str, list[LoadResult]]:
    body = bench.work / f"{method}.frame"
    body.write_bytes(h2load.grpc_frame(request))
    results: dict[str, list[LoadResult]] = {arm.name: [] for arm in arms}
    for n in range(bench.sizes.rounds):
        for arm in arms:
            log = bench.work / f"h2load-{method}-{arm.name.replace(' ', '-')}-{n}.log"
            result = await h2load.run(arm.target, SERVICE + method, body, bench.sizes.load, log)
            # A gRPC error is HTTP 200 too, but carries no message: check the bytes came back.
            if result.failed or result.data_bytes_per_request < reply_size:
                raise RuntimeError(f"{arm.name} did not answer {method} properly: {result}")
            results[arm.name].append(result)
    return results


def _figures(
    section: Section, what: str, results: dict[str, list[LoadResult]], arm: str, *, targets: bool
) -> None:
    bare = results["bare"]
    mine = results[arm]
    section.add(
        Figure(
            f"{what}: requests/s",
            median([r.requests_per_s for r in mine]),
            "req/s",
            median([r.requests_per_s for r in bare]),
            Target(Goal.RATIO_AT_LEAST, 0.6) if targets else None,
        )
    )
    section.add(
        Figure(
            f"{what}: p50", median([r.p50_ms for r in mine]), "ms", median([r.p50_ms for r in bare])
        )
    )
    section.add(
        Figure(
            f"{what}: p99",
            median([r.p99_ms for r in mine]),
            "ms",
            median([r.p99_ms for r in bare]),
            Target(Goal.RATIO_AT_MOST, 2.0) if targets else None,
        )
    )
