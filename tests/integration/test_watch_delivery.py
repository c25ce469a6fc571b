"""WatchStatus delivery under pressure: a stalled subscriber is cut off without delaying the
others, resumes without gaps, and streams that go away leave nothing behind."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from integrations.v1 import service_pb2 as api
from integrations.watch import Backoff, StatusWatch

from service.api.server import Server
from service.app import App
from service.domain.exceptions import ResourceExhausted
from service.domain.model import Integration
from service.domain.watch import Change, SnapshotComplete, WatchFilter
from service.engine.lifecycle_specs import ConfigureSpec, CreateSpec
from tests.support.rpc import Stub, failure, next_message
from tests.support.waiting import until
from tests.support.watch import Recorder, database_view, eventually, messages_of, view_of

BUFFER = 20
#: Long names make big messages, so a client that stops reading fills gRPC's flow-control
#: window (64 KiB without BDP probing) after a couple of hundred changes.
NAME = "x" * 190
#: A client channel whose receive window does not grow: it stalls the server quickly.
SMALL_WINDOW = [("grpc.http2.bdp_probe", 0)]


pytestmark = pytest.mark.settings(watch_buffer_size=BUFFER)


async def rename(app: App, integration: Integration, count: int) -> int:
    """`count` changes of the integration, one transaction each; returns the last revision."""
    revision = integration.revision
    for n in range(count):
        changed = await app.lifecycle.configure(
            "default", integration.id, "", ConfigureSpec(display_name=f"{n} {NAME}")
        )
        revision = changed.revision
    return revision


async def test_a_stalled_stream_is_cut_off_without_delaying_the_others(app: App) -> None:
    stalled = app.watch.stream("default", WatchFilter())
    fast = app.watch.stream("default", WatchFilter())
    try:
        assert await anext(stalled) == SnapshotComplete(0)
        assert await anext(fast) == SnapshotComplete(0)
        first = await app.lifecycle.create("default", CreateSpec("Calendar", "google_calendar"))
        for stream in (stalled, fast):  # both are live now
            message = await anext(stream)
            assert isinstance(message, Change) and message.revision == first.revision

        received: list[int] = []

        async def consume() -> None:
            async for message in fast:
                if isinstance(message, Change):
                    received.append(message.revision)

        consumer = asyncio.create_task(consume())
        last = await rename(app, first, BUFFER * 3)
        await eventually(lambda: bool(received) and received[-1] == last)
        consumer.cancel()
        assert received == list(range(first.revision + 1, last + 1))

        # The stalled stream never read a change; it was cut off, not waited for.
        with pytest.raises(ResourceExhausted) as raised:
            await anext(stalled)
        assert raised.value.reason == "WATCH_BUFFER_OVERFLOW"
        assert raised.value.metadata["resume_after_revision"] == str(first.revision)
    finally:
        stalled.close()
        fast.close()


async def test_a_stalled_client_gets_resource_exhausted_and_resumes_without_gaps(
    app: App, server: Server, stub: Stub
) -> None:
    first = await app.lifecycle.create("default", CreateSpec("Calendar", "google_calendar"))
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=SMALL_WINDOW
    ) as channel:
        stalled = Stub(channel).WatchStatus(api.WatchStatusRequest())
        received: list[int] = []
        while (await next_message(stalled)).WhichOneof("kind") != "snapshot_complete":
            pass
        fast = Recorder(stub.WatchStatus(api.WatchStatusRequest()))
        await fast.until_snapshot()

        last = await rename(app, first, 400)
        # The reader that keeps up has everything while the other has read nothing.
        await fast.until_revision(last)
        assert fast.revisions == list(range(first.revision + 1, last + 1))

        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async with asyncio.timeout(10):
                while True:
                    message = await next_message(stalled)
                    if message.WhichOneof("kind") == "change":
                        received.append(message.event.revision)
        problem = failure(raised.value)
        assert problem.code is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert problem.reason == "WATCH_BUFFER_OVERFLOW"
        assert received and received[-1] < last
        assert int(problem.metadata["resume_after_revision"]) >= received[-1]

        resumed = Recorder(
            stub.WatchStatus(api.WatchStatusRequest(resume_after_revision=received[-1]))
        )
        await resumed.until_revision(last)
        assert received + resumed.revisions == list(range(first.revision + 1, last + 1))
        await resumed.stop()
        await fast.stop()


async def test_the_client_watch_recovers_from_falling_behind_by_itself(
    app: App, server: Server
) -> None:
    first = await app.lifecycle.create("default", CreateSpec("Calendar", "google_calendar"))
    async with grpc.aio.insecure_channel(
        f"127.0.0.1:{server.port}", options=SMALL_WINDOW
    ) as channel:
        watch = StatusWatch(Stub(channel), backoff=Backoff(first=0.01))
        messages = messages_of(watch)
        while (await anext(messages)).WhichOneof("kind") != "snapshot_complete":
            pass
        last = await rename(app, first, 400)  # while the subscriber is not reading
        seen: list[int] = []
        async with asyncio.timeout(10):
            while watch.revision < last:
                message = await anext(messages)
                if message.WhichOneof("kind") == "change":
                    seen.append(message.event.revision)
        await messages.aclose()
    assert watch.connections >= 2  # it was cut off, and resumed by itself
    assert seen == list(range(first.revision + 1, last + 1))
    assert view_of(watch.view) == await database_view(app)


async def test_cancelled_streams_leave_no_task_or_connection_behind(app: App, stub: Stub) -> None:
    first = await app.lifecycle.create("default", CreateSpec("Calendar", "google_calendar"))
    watchers = [Recorder(stub.WatchStatus(api.WatchStatusRequest())) for _ in range(3)]
    watchers.append(
        Recorder(stub.WatchStatus(api.WatchStatusRequest(resume_after_revision=first.revision)))
    )
    watchers.append(Recorder(stub.WatchStatus(api.WatchStatusRequest(ids=[str(first.id)]))))
    changed = await app.lifecycle.configure(
        "default", first.id, "", ConfigureSpec(display_name="Renamed")
    )
    for watcher in watchers:
        await watcher.until_revision(changed.revision)
    assert len(app.watch.streams) == 5 and list(app.watch.feeds) == ["default"]

    for watcher in watchers:
        await watcher.stop()
    await eventually(lambda: not app.watch.streams and not app.watch.feeds)
    await eventually(
        lambda: not [t for t in asyncio.all_tasks() if t.get_name().startswith("watch-feed")]
    )
    pool = app.db.pool
    await eventually(lambda: pool.get_idle_size() == pool.get_size())
    async with app.db.raw() as conn:

        async def idle() -> bool:
            busy = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state <> 'idle'"
            )
            return not busy

        async def busy() -> object:
            return await conn.fetch(
                "SELECT pid, state, query FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )

        # A history read cancelled with its stream or feed was once seen still active on its
        # server process just after the pool counted every connection idle (one run in about
        # fifty, on a loaded machine): it must end by itself, not stay behind.
        await until(idle, "every server process idle", timeout=10, every=0.005, explain=busy)
        listeners = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'integrations-watch-listener'"
        )
    assert listeners == 1  # the process's one LISTEN connection, shared by every stream


async def test_a_stream_sees_only_its_own_tenant(app: App) -> None:
    mine = app.watch.stream("tenant-a", WatchFilter())
    try:
        assert await anext(mine) == SnapshotComplete(0)
        await app.lifecycle.create("tenant-b", CreateSpec("Theirs", "google_calendar"))
        ours = await app.lifecycle.create("tenant-a", CreateSpec("Ours", "google_calendar"))
        message = await anext(mine)
        assert isinstance(message, Change)
        assert message.event.state is not None and message.event.state.id == ours.id
        assert message.revision == ours.revision == 1  # revisions are per tenant
    finally:
        mine.close()
