"""Revisions commit in order, so a reader of "events after N" never skips one.

The classic failure: writer A takes revision 7, writer B takes 8 and commits first; a reader
sees 8, moves its position to 8, and never sees 7. Here the revision is taken by the last
statement of each writing transaction from a per-tenant counter row whose lock is held until
commit, so B cannot even get its revision before A commits. These tests try to break that
with concurrent writers on separate connections.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from service.app import App
from service.domain.model import Integration
from service.domain.watch import Change, SnapshotComplete, WatchFilter
from service.engine.lifecycle import ConfigureSpec, CreateSpec
from service.storage import watch as history
from service.storage.database import Database, Tx
from tests.support.watch import eventually


@pytest.fixture
async def writers(database_url: str) -> AsyncIterator[Database]:
    """A second pool: writers on connections of their own, beside the app's."""
    db = await Database.open(database_url, pool_size=8, run_migrations=False)
    yield db
    await db.close()


async def rename(tx: Tx, current: Integration, name: str) -> Integration:
    event = await tx.integrations.record_change(
        before=current,
        after=current.replace(display_name=name),
        trigger="settings_changed",
        actor="test",
        reason="renamed",
        occurred_at=datetime.now(UTC),
    )
    assert event.state is not None
    return event.state


async def test_a_later_writer_cannot_commit_before_an_earlier_one(
    app: App, writers: Database
) -> None:
    x = await app.lifecycle.create("default", CreateSpec("X", "google_calendar"))
    y = await app.lifecycle.create("default", CreateSpec("Y", "google_calendar"))
    stream = app.watch.stream("default", WatchFilter(), resume_after=y.revision)
    try:
        async with writers.pool.acquire() as conn:
            transaction = conn.transaction()
            await transaction.start()
            renamed = await rename(
                Tx(conn, None), x, "X, slowly"
            )  # takes revision y+1, not committed
            assert renamed.revision == y.revision + 1

            # Writer B starts later, on another connection, and would commit at once.
            later = asyncio.create_task(
                app.lifecycle.configure(
                    "default", y.id, "", ConfigureSpec(display_name="Y, quickly")
                )
            )
            async with app.db.raw() as probe:
                waiting = await _wait_for_lock_waiters(probe, 1)
            assert waiting == 1 and not later.done()

            # A reader now sees neither change: nothing after y is committed.
            page = await history.history(app.db, "default", y.revision, limit=10)
            assert page.events == [] and page.head == y.revision

            await transaction.commit()
        quick = await later
        assert quick.revision == renamed.revision + 1

        got = [await anext(stream), await anext(stream)]
        assert [m.revision for m in got if isinstance(m, Change)] == [
            renamed.revision,
            quick.revision,
        ]
    finally:
        stream.close()


async def _wait_for_lock_waiters(conn: asyncpg.Connection, count: int) -> int:
    """Until `count` backends of this database wait for a lock; returns how many do."""
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock'"
    )
    async with asyncio.timeout(10):
        # Polling the server's own view of who waits (there is no event to await).
        while (waiting := await conn.fetchval(query)) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.005)
    return int(waiting)


async def test_concurrent_writers_committing_in_any_order_lose_nothing(
    app: App, writers: Database
) -> None:
    subjects = [
        await app.lifecycle.create("default", CreateSpec(f"S{n}", "google_calendar"))
        for n in range(8)
    ]
    start = subjects[-1].revision
    stream = app.watch.stream("default", WatchFilter())
    received: list[int] = []
    gaps: list[tuple[int, int]] = []

    async def watch() -> None:
        async for message in stream:
            if isinstance(message, SnapshotComplete):
                assert message.revision == start
            if isinstance(message, Change):
                received.append(message.revision)

    async def poll() -> None:
        # A tight reader, as a naive implementation would be: every page must continue
        # exactly where the last one ended.
        position = start
        while True:
            page = await history.history(app.db, "default", position, limit=1000)
            for event in page.events:
                if event.revision != position + 1:
                    gaps.append((position, event.revision))
                position = event.revision

    async def write(subject: Integration, rounds: int) -> None:
        current = subject
        rng = random.Random(subject.id.int)
        for n in range(rounds):
            async with writers.raw() as conn, conn.transaction():
                # Work of random length before and after taking the revision, so
                # transactions start, take revisions and try to commit in scrambled orders.
                tx = Tx(conn, None)
                await conn.execute("SELECT pg_sleep($1)", rng.random() / 500)
                current = await tx.integrations.lock("default", current.id)
                current = await rename(tx, current, f"{subject.display_name} #{n}")
                await conn.execute("SELECT pg_sleep($1)", rng.random() / 1000)

    watcher = asyncio.create_task(watch())
    poller = asyncio.create_task(poll())
    await asyncio.gather(*(write(s, 40) for s in subjects))
    end = await history.head(app.db, "default")
    assert end == start + 8 * 40
    await eventually(lambda: len(received) >= end - start)
    watcher.cancel()
    poller.cancel()
    stream.close()
    await asyncio.gather(watcher, poller, return_exceptions=True)
    assert received == list(range(start + 1, end + 1))
    assert gaps == []
