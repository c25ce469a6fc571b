"""The hand-off from "read the table yourself" to "the feed offers it to you", with the
history held in memory and every read gated, so each interleaving is forced, not hoped for."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest

from service.domain.exceptions import (
    FailedPrecondition,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from service.domain.model import Event, Integration
from service.domain.status import Status
from service.domain.watch import (
    Change,
    Heartbeat,
    SnapshotComplete,
    SnapshotItem,
    WatchFilter,
    WatchMessage,
)
from service.engine.watch import WatchHub, WatchSettings, WatchStream
from service.engine.watch_feed import Inbox
from service.storage.database import Database
from service.storage.watch import NEWEST, HistoryPage
from service.storage.watch_listener import ChangeListener

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TENANT = "t"


class History:
    """One tenant's event log in memory, read with the contract of storage.watch.history."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.head = 0
        self.compacted_through = 0
        self.ids = [uuid.uuid4(), uuid.uuid4()]
        self.statuses: dict[uuid.UUID, Status] = {}

    def commit(self, status: Status = Status.ACTIVE, which: int = 0) -> Event:
        self.head += 1
        state = Integration(
            tenant_id=TENANT,
            id=self.ids[which],
            display_name="Cal",
            connector_type="google_calendar",
            status=status,
            revision=self.head,
            created_at=NOW,
            updated_at=NOW,
            sync_interval=timedelta(minutes=15),
        )
        before = self.statuses.get(state.id)
        self.statuses[state.id] = status
        event = Event(
            tenant_id=TENANT,
            revision=self.head,
            integration_id=state.id,
            trigger="succeeded",
            from_status=before,
            to_status=status,
            reason="",
            actor="test",
            occurred_at=NOW,
            state=state,
        )
        self.events.append(event)
        return event

    def compact(self, through: int) -> None:
        self.events = [e for e in self.events if e.revision > through]
        self.compacted_through = through

    def page(self, after: int, through: int, limit: int) -> HistoryPage:
        selected = [e for e in self.events if after < e.revision <= through][:limit]
        return HistoryPage(selected, self.compacted_through, self.head)


class InMemoryHub(WatchHub):
    """The real hub, its reads served from `History`. Streams' reads take their page when
    called and return it when `stream_gate` opens (as a statement's snapshot is taken when
    it starts); the feed reads when `feed_gate` is open."""

    def __init__(
        self,
        history: History,
        *,
        heartbeat_interval: timedelta,
        buffer_size: int = WatchSettings.buffer_size,
    ) -> None:
        config = WatchSettings(
            heartbeat_interval=heartbeat_interval,
            buffer_size=buffer_size,
            poll_interval=timedelta(hours=1),
            page_size=3,
        )
        # A stand-in, not a pool: every read goes through the methods below, and the listener
        # (of no database) is never started.
        stand_in = SimpleNamespace(listener=lambda **kw: ChangeListener("", **kw))
        super().__init__(cast(Database, stand_in), config)
        self.history = history
        self.stream_gate = asyncio.Event()
        self.stream_gate.set()
        self.feed_gate = asyncio.Event()
        self.feed_gate.set()
        self.fail_next_feed_read = False

    async def snapshot(
        self, tenant_id: str, selection: WatchFilter
    ) -> tuple[int, list[Integration]]:
        latest = {e.integration_id: e.state for e in self.history.events if e.state}
        return self.history.head, [s for s in latest.values() if selection.matches(s)]

    async def read(
        self, tenant_id: str, after: int, limit: int, *, through: int = NEWEST
    ) -> HistoryPage:
        page = self.history.page(after, through, limit)
        await self.stream_gate.wait()
        return page

    async def _read_for_feed(self, tenant_id: str, after: int, limit: int) -> HistoryPage:
        await self.feed_gate.wait()
        if self.fail_next_feed_read:
            self.fail_next_feed_read = False
            raise Unavailable("the database is restarting")
        return self.history.page(after, NEWEST, limit)

    def commit(self, status: Status = Status.ACTIVE, which: int = 0) -> Event:
        """Commit an event and notify, as record_change and the listener do."""
        event = self.history.commit(status, which)
        self._on_change(TENANT, event.revision)
        return event


@pytest.fixture
async def hub() -> AsyncIterator[InMemoryHub]:
    memory = InMemoryHub(History(), heartbeat_interval=timedelta(hours=1))
    yield memory
    await memory.stop()


async def take(stream: WatchStream, count: int) -> list[WatchMessage]:
    async with asyncio.timeout(5):
        return [await anext(stream) for _ in range(count)]


def revisions(messages: list[WatchMessage]) -> list[int]:
    return [m.revision for m in messages if isinstance(m, Change)]


async def settled(hub: InMemoryHub) -> None:
    """Until the tenant's feed has read everything committed."""
    async with asyncio.timeout(5):
        # Yielding to the feed's task until it has caught up (no event marks that).
        while hub.feeds[TENANT].position < hub.history.head:  # noqa: ASYNC110
            await asyncio.sleep(0)


async def test_a_stream_ahead_of_the_feed_gets_each_change_once(hub: InMemoryHub) -> None:
    for _ in range(2):
        hub.commit()
    first = hub.stream(TENANT, WatchFilter(), resume_after=0)
    assert revisions(await take(first, 2)) == [1, 2]  # read from the table, then joined
    await settled(hub)

    hub.feed_gate.clear()  # the feed falls behind ...
    hub.commit()
    hub.commit()
    second = hub.stream(TENANT, WatchFilter(), resume_after=0)
    # ... so the new stream reads 1-4 itself and joins a feed still at 2.
    assert revisions(await take(second, 4)) == [1, 2, 3, 4]
    assert hub.feeds[TENANT].position == 2

    hub.feed_gate.set()
    hub.commit()
    assert revisions(await take(first, 3)) == [3, 4, 5]
    assert revisions(await take(second, 1)) == [5]  # not 3 and 4 again


async def test_a_stream_behind_the_feed_reads_the_gap_itself(hub: InMemoryHub) -> None:
    for _ in range(2):
        hub.commit()
    first = hub.stream(TENANT, WatchFilter(), resume_after=0)
    assert revisions(await take(first, 2)) == [1, 2]

    hub.stream_gate.clear()
    second = hub.stream(TENANT, WatchFilter(), resume_after=0)
    reading = asyncio.create_task(take(second, 5))
    await asyncio.sleep(0)  # the second stream has taken its page: revisions 1-2
    hub.commit()
    hub.commit()
    await settled(hub)  # the feed offered 3 and 4 before the second stream joined
    hub.stream_gate.set()
    hub.commit()
    assert revisions(await reading) == [1, 2, 3, 4, 5]  # 3-4 from the table, 5 offered
    assert revisions(await take(first, 3)) == [3, 4, 5]


async def test_a_snapshot_then_changes_after_its_revision(hub: InMemoryHub) -> None:
    hub.commit(Status.ACTIVE, which=0)
    hub.commit(Status.PAUSED, which=1)
    stream = hub.stream(TENANT, WatchFilter.of(statuses=[Status.ACTIVE]))
    snapshot = await take(stream, 2)
    assert [type(m) for m in snapshot] == [SnapshotItem, SnapshotComplete]
    assert snapshot[1] == SnapshotComplete(2)
    hub.commit(Status.ERROR, which=0)  # leaves the selection: sent once more
    hub.commit(Status.ERROR, which=0)  # not sent
    hub.commit(Status.ACTIVE, which=1)
    assert revisions(await take(stream, 2)) == [3, 5]


async def test_heartbeats_carry_the_position_past_unselected_changes() -> None:
    hub = InMemoryHub(History(), heartbeat_interval=timedelta(milliseconds=1))
    try:
        stream = hub.stream(TENANT, WatchFilter.of(statuses=[Status.DISCONNECTED]))
        assert await take(stream, 1) == [SnapshotComplete(0)]
        assert await take(stream, 1) == [Heartbeat(0)]
        hub.commit()
        hub.commit()
        await settled(hub)
        assert await take(stream, 1) == [Heartbeat(2)]
        assert stream.position == 2
    finally:
        await hub.stop()


async def test_a_heartbeat_waits_a_whole_interval_after_the_last_change() -> None:
    # The inbox arms its timer for the first wait and re-arms it only when it fires: a
    # change that ends a wait must push the next heartbeat back a whole interval, not let
    # the timer armed for that wait end the next one early.
    interval = 0.2
    inbox = Inbox(WatchFilter(), after=0, capacity=10)
    loop = asyncio.get_running_loop()
    # The change comes half-way through the first wait (the scenario's own timing: the
    # loop's timer slack is a millisecond or more, so a change right after the wait began
    # would not tell a timer that re-arms from one that does not).
    loop.call_later(interval / 2, inbox.offer, History().commit())
    event = await inbox.get(interval)
    assert event is not None and event.revision == 1
    changed = loop.time()
    assert await inbox.get(interval) is None  # the heartbeat's turn
    assert loop.time() - changed >= interval


async def test_resuming_from_compacted_or_unwritten_history_fails(hub: InMemoryHub) -> None:
    for _ in range(5):
        hub.commit()
    hub.history.compact(through=3)
    with pytest.raises(FailedPrecondition) as compacted:
        await take(hub.stream(TENANT, WatchFilter(), resume_after=2), 1)
    assert compacted.value.reason == "REVISION_COMPACTED"
    assert compacted.value.metadata == {"resume_after_revision": "2", "compacted_through": "3"}
    assert revisions(await take(hub.stream(TENANT, WatchFilter(), resume_after=3), 2)) == [4, 5]
    with pytest.raises(OutOfRange) as ahead:
        await take(hub.stream(TENANT, WatchFilter(), resume_after=6), 1)
    assert ahead.value.reason == "REVISION_AHEAD"


async def test_a_feed_stuck_past_the_retention_window_ends_the_streams_it_failed(
    hub: InMemoryHub,
) -> None:
    hub.commit()
    behind = hub.stream(TENANT, WatchFilter(), resume_after=0)
    assert revisions(await take(behind, 1)) == [1]
    hub.feed_gate.clear()
    for _ in range(3):
        hub.commit()
    hub.history.compact(through=3)
    ahead = hub.stream(TENANT, WatchFilter(), resume_after=3)
    hub.commit()
    assert revisions(await take(ahead, 2)) == [4, 5]  # from its own catch-up
    hub.feed_gate.set()
    with pytest.raises(FailedPrecondition) as raised:
        await take(behind, 1)
    assert raised.value.reason == "REVISION_COMPACTED"
    hub.commit()
    assert revisions(await take(ahead, 1)) == [6]  # the feed goes on for the others


async def test_a_failed_feed_read_is_retried_and_nothing_is_lost(hub: InMemoryHub) -> None:
    stream = hub.stream(TENANT, WatchFilter(), resume_after=0)
    hub.commit()
    assert revisions(await take(stream, 1)) == [1]
    hub.fail_next_feed_read = True
    hub.commit()
    hub.commit()
    assert revisions(await take(stream, 2)) == [2, 3]


async def test_shutdown_ends_every_stream_and_refuses_new_ones(hub: InMemoryHub) -> None:
    live = hub.stream(TENANT, WatchFilter(), resume_after=0)
    hub.commit()
    assert revisions(await take(live, 1)) == [1]
    waiting = asyncio.create_task(take(live, 1))
    await asyncio.sleep(0)
    not_started = hub.stream(TENANT, WatchFilter())
    hub.end_streams()
    for stream, pending in ((live, waiting), (not_started, None)):
        with pytest.raises(Unavailable) as raised:
            await (pending if pending is not None else take(stream, 1))
        assert raised.value.reason == "SHUTTING_DOWN"
    assert raised.value.metadata["resume_after_revision"] == "0"
    assert live.position == 1
    with pytest.raises(Unavailable):
        hub.stream(TENANT, WatchFilter())


async def test_the_last_stream_to_leave_stops_the_feed(hub: InMemoryHub) -> None:
    streams = [hub.stream(TENANT, WatchFilter(), resume_after=0) for _ in range(2)]
    hub.commit()
    for stream in streams:
        assert revisions(await take(stream, 1)) == [1]
    feed = hub.feeds[TENANT]
    streams[0].close()
    streams[0].close()  # idempotent
    assert hub.feeds == {TENANT: feed}
    streams[1].close()
    assert hub.feeds == {} and not hub.streams
    async with asyncio.timeout(5):
        await asyncio.gather(feed.task, return_exceptions=True)
    assert feed.task.cancelled()
    with pytest.raises(StopAsyncIteration):
        await anext(streams[1])


async def test_a_stream_that_falls_behind_is_cut_off_at_its_last_delivered_revision() -> None:
    hub = InMemoryHub(History(), heartbeat_interval=timedelta(hours=1), buffer_size=2)
    try:
        slow = hub.stream(TENANT, WatchFilter(), resume_after=0)
        hub.commit()
        assert revisions(await take(slow, 1)) == [1]
        for _ in range(3):  # one more than its buffer holds
            hub.commit()
        await settled(hub)
        with pytest.raises(ResourceExhausted) as raised:
            await take(slow, 1)
        assert raised.value.reason == "WATCH_BUFFER_OVERFLOW"
        assert raised.value.metadata["resume_after_revision"] == "1"
        with pytest.raises(ResourceExhausted):  # it stays ended
            await take(slow, 1)
    finally:
        await hub.stop()


async def test_closing_a_stream_ends_a_pending_read(hub: InMemoryHub) -> None:
    stream = hub.stream(TENANT, WatchFilter(), resume_after=0)
    hub.commit()
    assert revisions(await take(stream, 1)) == [1]
    pending = asyncio.create_task(take(stream, 1))
    await asyncio.sleep(0)
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await pending
