"""WatchStatus across real replicas: two `python -m service` processes on one PostgreSQL,
subscribers and writers on both, and a subscriber that follows a replica's shutdown to the
other one with the Python client's watch helper."""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import grpc
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.watch import Backoff, StatusWatch

from service.api.convert import STATUS
from service.domain.status import Status
from tests.support.process import ServiceProcess
from tests.support.rpc import Stub
from tests.support.watch import messages_of


@asynccontextmanager
async def replicas(
    database_url: str, tmp_path: Path, count: int = 2
) -> AsyncIterator[list[ServiceProcess]]:
    """`count` service processes on the database, started side by side."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    processes = [
        ServiceProcess(
            "--database-url",
            database_url,
            "--data-dir",
            str(tmp_path / f"r{n}"),
            "--encryption-keys",
            f"k1:{key}",
            "--watch-heartbeat-interval",
            "200ms",
            "--shutdown-grace",
            "5s",
        )
        for n in range(count)
    ]
    await asyncio.gather(*(p.start() for p in processes))
    try:
        yield processes
    finally:
        for p in processes:
            if p.proc is not None and p.proc.returncode is None:
                await p.stop()


async def database_view(database_url: str) -> dict[str, tuple[int, int]]:
    """id -> (status, revision) of every integration, read from the database itself."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT id, status, revision FROM integrations")
    finally:
        await conn.close()
    return {str(r["id"]): (int(STATUS.to_pb[Status(r["status"])]), r["revision"]) for r in rows}


async def newest_revision(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT revision FROM tenant_revisions"))
    finally:
        await conn.close()


def view_of(watch: StatusWatch) -> dict[str, tuple[int, int]]:
    return {i: (int(v.status), v.revision) for i, v in watch.view.items()}


async def write(stub: Stub, changes: int, tag: str) -> None:
    """`changes` changes through one replica: creations, renames and deletions."""
    owned: list[str] = []
    for n in range(changes):
        if len(owned) < 3 or n % 10 == 0:
            created = await stub.Create(
                api.CreateRequest(display_name=f"{tag} {n}", connector_type="ics_feed")
            )
            owned.append(created.integration.id)
        elif n % 17 == 0:
            await stub.Delete(api.DeleteRequest(id=owned.pop(0)))
        else:
            await stub.Configure(
                api.ConfigureRequest(id=owned[n % len(owned)], display_name=f"{tag} renamed {n}")
            )


async def follow(watch: StatusWatch, head: asyncio.Future[int]) -> list[int]:
    """Read the watch until it has reached `head` (once known; heartbeats keep it moving when
    idle); returns the change and deletion revisions it saw."""
    seen: list[int] = []
    messages = messages_of(watch)
    try:
        while True:
            message = await anext(messages)
            if message.WhichOneof("kind") in ("change", "deleted"):
                seen.append(message.event.revision)
            if head.done() and watch.revision >= head.result():
                return seen
    finally:
        await messages.aclose()


async def test_two_processes_a_thousand_changes_every_subscriber_equals_the_database(
    database_url: str, tmp_path: Path
) -> None:
    async with (
        replicas(database_url, tmp_path) as (a, b),
        grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as channel_a,
        grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as channel_b,
    ):
        stubs = [Stub(channel_a), Stub(channel_b)]
        watches = [
            StatusWatch(stubs[0]),
            StatusWatch(stubs[1]),
            StatusWatch(stubs[0], statuses=[pb.STATUS_DRAFT]),
            StatusWatch(stubs[1], connector_type="ics_feed"),
        ]
        head: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        followers = [asyncio.create_task(follow(w, head)) for w in watches]
        await asyncio.gather(*(write(stubs[n % 2], 125, f"writer {n}") for n in range(8)))

        truth = await database_view(database_url)
        assert await newest_revision(database_url) == 1000
        head.set_result(1000)
        seen = await asyncio.wait_for(asyncio.gather(*followers), timeout=60)
    for watch, revisions in zip(watches, seen, strict=True):
        assert revisions == sorted(set(revisions))  # in order, never twice
        assert view_of(watch) == truth  # every integration is a DRAFT ics feed here


async def test_a_subscriber_follows_a_shutdown_to_the_other_replica(
    database_url: str, tmp_path: Path
) -> None:
    async with replicas(database_url, tmp_path) as (a, b):
        # One channel over both replicas, as behind a load balancer: the first is used
        # until it goes away.
        target = f"ipv4:127.0.0.1:{a.port},127.0.0.1:{b.port}"
        async with (
            grpc.aio.insecure_channel(target) as both,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as only_b,
        ):
            watch = StatusWatch(Stub(both), backoff=Backoff(first=0.05))
            head: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            follower = asyncio.create_task(follow(watch, head))
            writer_b = Stub(only_b)
            await write(writer_b, 50, "before")
            assert await a.stop(signal.SIGTERM) == 0  # the replica the watch is on
            await write(writer_b, 50, "after")

            head.set_result(await newest_revision(database_url))
            seen = await asyncio.wait_for(follower, timeout=60)
    ended = [e for e in a.events("rpc") if str(e["method"]).endswith("/WatchStatus")]
    assert [e["code"] for e in ended] == ["UNAVAILABLE"]  # not CANCELLED after the grace
    assert watch.connections >= 2
    assert seen == sorted(set(seen))
    assert view_of(watch) == await database_view(database_url)
