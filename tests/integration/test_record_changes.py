"""The change feed of synced records: exact listings, then every change once, in commit order.

Real PostgreSQL, real gRPC, the sandbox's Google Calendar (pages of two events). A `Consumer`
keeps a local copy the way another service would, and each test compares it with the
provider's data.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import grpc
import pytest
from integrations.client import IntegrationsClient
from integrations.copies import CopyPage, keep_in_step
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from sandbox import Sandbox
from service.api.server import Server
from service.app import App
from service.config import Settings
from service.domain.sync import SyncTrigger
from service.storage.sync import PageWrite
from tests.support.clock import FakeClock
from tests.support.feed import Consumer, kinds
from tests.support.rpc import Stub, failure
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    get,
    provider_events,
    put_event,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT, tombstone_retention=timedelta(days=2))


@pytest.fixture
def calendar_events() -> int:
    return 5


async def sync(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    assert response.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    return response


def summaries(consumer: Consumer) -> dict[str, str]:
    return {k: v["summary"] for k, v in consumer.copy.items()}


async def test_read_everything_then_follow_the_changes_is_exact(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    consumer = Consumer(stub, calendar)
    first = await stub.ListRecords(api.ListRecordsRequest(id=calendar, page_size=2))
    assert [r.id for r in first.records] == ["e1", "e2"]
    # While the consumer is between pages, the provider changes and a sync commits.
    put_event(sb.state, "e4", "Moved", day=4)
    sb.state.google.delete_event(CALENDAR, "e5")
    put_event(sb.state, "e6", "New", day=6)
    await sync(stub, calendar)

    rest = await stub.ListRecords(
        api.ListRecordsRequest(id=calendar, page_size=2, page_token=first.next_page_token)
    )
    # The listing stays exact as of its first page: e4 changed and e5 went after it, so they
    # come through the feed, not twice.
    assert [r.id for r in rest.records] == ["e3"]
    assert rest.cursor == first.cursor and not rest.next_page_token
    consumer.copy = {r.id: {"summary": r.data["summary"]} for r in [*first.records, *rest.records]}
    consumer.cursor = first.cursor

    changes = await consumer.follow()

    assert kinds(changes) == {("UPSERT", "e4"), ("DELETE", "e5"), ("UPSERT", "e6")}
    assert len(changes) == 3
    assert summaries(consumer) == provider_events(sb.state)
    assert await consumer.follow() == []  # caught up: nothing seen twice


async def test_unchanged_records_are_not_sent_again_and_a_full_resync_reports_what_it_removed(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    consumer = Consumer(stub, calendar)
    assert sorted(await consumer.read_all()) == ["e1", "e2", "e3", "e4", "e5"]
    assert await consumer.follow() == []

    # A sync that finds nothing new emits nothing; neither does a full resync of the same data.
    await sync(stub, calendar)
    assert await consumer.follow() == []
    sb.state.google.invalidate_sync_tokens(CALENDAR)
    assert (await sync(stub, calendar)).run.full_resync
    assert await consumer.follow() == []

    # A 410 resync where e3 vanished without a tombstone: only the full listing notices.
    sb.state.google.invalidate_sync_tokens(CALENDAR, drop=["e3"])
    put_event(sb.state, "e7", "While we were away", day=7)
    response = await sync(stub, calendar)

    assert response.run.full_resync
    changes = await consumer.follow()
    assert kinds(changes) == {("DELETE", "e3"), ("UPSERT", "e7")}
    assert summaries(consumer) == provider_events(sb.state)
    # Tombstones are not records: counts and listings leave them out.
    assert response.integration.record_count == 5
    fresh = Consumer(stub, calendar)
    assert sorted(await fresh.read_all()) == ["e1", "e2", "e4", "e5", "e7"]

    # A record that comes back after its deletion is a new change.
    put_event(sb.state, "e3", "Back again", day=3)
    await sync(stub, calendar)
    assert kinds(await consumer.follow()) == {("UPSERT", "e3")}
    assert summaries(consumer) == provider_events(sb.state)


async def test_the_feed_from_the_start_is_the_whole_data(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    sb.state.google.delete_event(CALENDAR, "e2")
    await sync(stub, calendar)
    consumer = Consumer(stub, calendar)  # no listing: an empty cursor reads from the start

    changes = await consumer.follow(page_size=2)

    assert summaries(consumer) == provider_events(sb.state)
    assert [c.sequence for c in changes] == sorted(c.sequence for c in changes)
    upserts = [c for c in changes if c.kind == pb.RECORD_CHANGE_KIND_UPSERT]
    assert all(c.record.sequence == c.sequence for c in upserts)


async def test_order_is_commit_order_while_pages_commit_concurrently(app: App, stub: Stub) -> None:
    """Writers on two integrations commit pages as fast as they can while a consumer follows
    one of them: every number it sees is larger than the last, and its copy ends up exact (a
    number committed below one already seen would be lost to it)."""
    followed = await _draft(stub)
    other = await _draft(stub)
    consumer = Consumer(stub, followed)
    rng = random.Random(7)
    done = asyncio.Event()

    async def writer(ident: str, pages: int) -> None:
        for n in range(pages):
            ids = rng.sample(range(12), 4)
            records = {f"r{i}": {"v": f"{ident[:4]}-{n}-{i}"} for i in ids[:3]}
            await _commit(app, ident, records, deleted=[f"r{ids[3]}"])

    async def follow() -> None:
        while not done.is_set():
            await consumer.follow(page_size=2)

    following = asyncio.create_task(follow())
    await asyncio.gather(writer(followed, 40), writer(followed, 40), writer(other, 40))
    done.set()
    await following
    await consumer.follow()

    expected = Consumer(stub, followed)
    await expected.read_all(page_size=5)
    assert consumer.copy == expected.copy
    assert consumer.seen == sorted(set(consumer.seen))
    assert consumer.cursor == expected.cursor


async def test_a_cursor_older_than_the_retention_window_has_expired(
    stub: Stub, sb: Sandbox, calendar: str, app: App, clock: FakeClock
) -> None:
    await sync(stub, calendar)
    stale = Consumer(stub, calendar)
    await stale.read_all()
    sb.state.google.delete_event(CALENDAR, "e2")
    await sync(stub, calendar)
    current = Consumer(stub, calendar)
    await current.read_all()

    clock.advance(days=1)  # within the window (2 days here): the deletion is kept
    assert await app.feed_retention.purge_tombstones() == 0
    assert kinds(await Consumer(stub, calendar).follow()) >= {("DELETE", "e2")}
    clock.advance(days=1, seconds=1)
    assert await app.feed_retention.purge_tombstones() == 1

    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stale.follow()
    expired = failure(raised.value)
    assert expired.code is grpc.StatusCode.FAILED_PRECONDITION
    assert expired.reason == "CURSOR_EXPIRED"
    assert "ListRecords" in expired.message and "2 days" in expired.message
    # A cursor that already saw the deletion, and the feed from the start, still work.
    assert await current.follow() == []
    fresh = Consumer(stub, calendar)
    assert kinds(await fresh.follow()) == {("UPSERT", e) for e in ("e1", "e3", "e4", "e5")}
    assert (await get(stub, calendar)).record_count == 4


async def test_cursors_are_opaque_and_bound_to_their_integration(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    cursor = (await stub.ListRecords(api.ListRecordsRequest(id=calendar))).cursor
    other = await _draft(stub)
    for after, ident in (("not-a-cursor", calendar), (cursor, other), (cursor[:-3], calendar)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.ListRecordChanges(api.ListRecordChangesRequest(id=ident, after=after))
        bad = failure(raised.value)
        assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
        assert "after" in bad.violations


async def test_another_tenants_feed_is_not_found(settings: Settings, clock: FakeClock) -> None:
    async with _keyed(settings, clock) as keyed:
        acme = (("authorization", "Bearer acme-key-0123456789"),)
        globex = (("authorization", "Bearer globex-key-0123456789"),)
        mine = await keyed.Create(
            api.CreateRequest(display_name="Acme data", connector_type="google_calendar"),
            metadata=acme,
        )
        ident = mine.integration.id
        own = await keyed.ListRecordChanges(api.ListRecordChangesRequest(id=ident), metadata=acme)
        assert list(own.changes) == [] and own.cursor
        for call in (
            keyed.ListRecordChanges(api.ListRecordChangesRequest(id=ident), metadata=globex),
            keyed.ListRecords(api.ListRecordsRequest(id=ident), metadata=globex),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await call
            assert failure(raised.value).reason == "INTEGRATION_NOT_FOUND"


async def _draft(stub: Stub) -> str:
    created = await stub.Create(
        api.CreateRequest(display_name="Pages by hand", connector_type="google_calendar")
    )
    return str(created.integration.id)


async def _commit(
    app: App, ident: str, records: dict[str, dict[str, Any]], deleted: list[str]
) -> None:
    """Commit one page of a sync run the way the runner does: under the integration's lock."""
    tenant, integration_id = "default", UUID(ident)
    async with app.db.transaction() as tx:
        held = await tx.claims.hold(tenant, integration_id)
        run = await tx.sync.running_run(tenant, integration_id) or await tx.sync.insert_run(
            tenant,
            integration_id,
            uuid4(),
            SyncTrigger.MANUAL,
            app.clock(),
            app.clock() + timedelta(hours=1),
            lease_version=held.lease_version,
        )
        texts = {record_id: json.dumps(data) for record_id, data in records.items()}
        write = PageWrite(texts, deleted, None, False, {"position": None}, False)
        await tx.sync.commit_page(run, write, now=app.clock(), lease_expires_at=run.started_at)


@asynccontextmanager
async def _keyed(settings: Settings, clock: FakeClock) -> AsyncIterator[Stub]:
    """The service with two tenants' API keys, on its own socket."""
    keyed = await App.start(
        replace(settings, api_keys="acme-key-0123456789=acme,globex-key-0123456789=globex"),
        clock=clock,
    )
    server = Server(keyed)
    await server.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield service_pb2_grpc.IntegrationServiceStub(channel)
    finally:
        await server.stop(grace=1)
        await keyed.close()


async def test_the_python_client_resumes_the_feed_from_its_cursor(
    stub: Stub, sb: Sandbox, calendar: str, channel: grpc.aio.Channel
) -> None:
    await sync(stub, calendar)
    async with IntegrationsClient(channel=channel) as client:
        pages = [p async for p in client.record_changes(calendar, page_size=2)]
        assert [len(p.changes) for p in pages] == [2, 2, 1]
        cursor = pages[-1].cursor
        put_event(sb.state, "e2", "Changed", day=2)
        await sync(stub, calendar)

        [page] = [p async for p in client.record_changes(calendar, after=cursor)]

    assert [(c.record_id, c.record.data["summary"]) for c in page.changes] == [("e2", "Changed")]


async def test_the_readme_consumer_keeps_its_copy_in_step(
    stub: Stub, sb: Sandbox, calendar: str, channel: grpc.aio.Channel, app: App, clock: FakeClock
) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    code = readme.split("<!-- consumer -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # the README's code, as printed
    keep_in_step = namespace["keep_in_step"]  # integrations.copies', as the README imports it
    db = sqlite3.connect(":memory:")
    copy = namespace["SqliteCopy"](db)
    db.execute("CREATE TABLE records (id TEXT PRIMARY KEY, data TEXT)")
    db.execute("CREATE TABLE feed (one INTEGER PRIMARY KEY, cursor TEXT)")

    def local() -> dict[str, str]:
        rows = db.execute("SELECT id, data FROM records").fetchall()
        return {ident: json.loads(data)["summary"] for ident, data in rows}

    async with IntegrationsClient(channel=channel) as client:
        await sync(stub, calendar)
        await keep_in_step(client, calendar, copy)
        assert local() == provider_events(sb.state)

        sb.state.google.delete_event(CALENDAR, "e1")
        put_event(sb.state, "e2", "Changed", day=2)
        await sync(stub, calendar)
        await keep_in_step(client, calendar, copy)
        assert local() == provider_events(sb.state)

        # Away for longer than deletions are kept: it starts over and is exact again.
        sb.state.google.delete_event(CALENDAR, "e3")
        await sync(stub, calendar)
        clock.advance(days=3)
        assert await app.feed_retention.purge_tombstones() == 2
        await keep_in_step(client, calendar, copy)
        assert local() == provider_events(sb.state)


async def test_keep_in_step_awaits_an_asynchronous_copy_and_resumes_from_its_cursor(
    stub: Stub, sb: Sandbox, calendar: str, channel: grpc.aio.Channel
) -> None:
    class MemoryCopy:
        """A copy whose apply is a coroutine, as with an asyncio database driver."""

        def __init__(self) -> None:
            self.records: dict[str, dict[str, Any]] = {}
            self.stored = ""
            self.pages = 0

        def cursor(self) -> str:
            return self.stored

        async def apply(self, page: CopyPage) -> None:
            await asyncio.sleep(0)
            if page.restart:
                self.records.clear()
            for ident in page.deleted:
                self.records.pop(ident, None)
            self.records.update(page.upserted)
            self.stored, self.pages = page.cursor, self.pages + 1

    copy = MemoryCopy()
    async with IntegrationsClient(channel=channel) as client:
        await sync(stub, calendar)
        await keep_in_step(client, calendar, copy, page_size=2)
        assert {k: v["summary"] for k, v in copy.records.items()} == provider_events(sb.state)
        assert copy.pages == 3  # five records, two a page

        put_event(sb.state, "e4", "Moved", day=3)
        await sync(stub, calendar)
        await keep_in_step(client, calendar, copy)
        assert copy.pages == 4  # only the change, from the stored cursor
        assert copy.records["e4"]["summary"] == "Moved"
