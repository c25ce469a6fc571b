"""The watch hub: every WatchStatus stream of this process, fed from the event table.

How a stream stays complete and in order, on every replica:

- The event table is the truth and revisions of a tenant commit in order, so reading
  "events after my position" never skips anything that commits later (see
  `storage.integrations.record_change`). NOTIFY only says *when* to read.
- A new stream first takes a snapshot and its revision in one REPEATABLE READ transaction
  (or starts from the revision it resumes after), then reads the table page by page until it
  reaches the head, and only then joins its tenant's feed (`TenantFeed`): joining is
  synchronous, so the feed's position at that moment splits the history exactly into "read
  it yourself from the table" (at or below) and "offered to you" (above). Nothing falls in
  between and nothing is sent twice.
- One LISTEN connection per process (`ChangeListener`) wakes the feeds of the tenants whose
  changes it hears about; after a reconnection it wakes them all, and each feed also re-reads
  every poll interval, so a lost notification only delays a change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import structlog

from service.domain.exceptions import (
    FailedPrecondition,
    OutOfRange,
    ResourceExhausted,
    ServiceError,
    Unavailable,
)
from service.domain.model import Integration
from service.domain.watch import (
    Change,
    Heartbeat,
    SnapshotComplete,
    SnapshotItem,
    WatchFilter,
    WatchMessage,
)
from service.engine.watch_feed import Inbox, TenantFeed
from service.observability import metrics
from service.storage import watch as store
from service.storage.database import Database
from service.storage.watch import NEWEST, HistoryPage

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WatchSettings:
    """How the hub serves streams."""

    #: A stream quiet for this long gets a heartbeat.
    heartbeat_interval: timedelta = timedelta(seconds=30)
    #: Changes buffered per stream before a slow subscriber is cut off.
    buffer_size: int = 1000
    #: How often feeds re-read without a notification, and the listener checks its connection.
    poll_interval: timedelta = timedelta(seconds=5)
    #: Events per read of the table.
    page_size: int = 500
    #: Streams this process serves at once; more are refused (RESOURCE_EXHAUSTED).
    max_streams: int = 4000


class WatchHub:
    """Creates streams, runs one feed per watched tenant, and owns the LISTEN connection."""

    def __init__(self, db: Database, settings: WatchSettings) -> None:
        self.db = db
        self.settings = settings
        self.listener = db.listener(
            on_change=self._on_change,
            on_connected=self._wake_all,
            check_interval=settings.poll_interval.total_seconds(),
        )
        self._feeds: dict[str, TenantFeed] = {}
        self._streams: set[WatchStream] = set()
        self._stopping: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def feeds(self) -> dict[str, TenantFeed]:
        """The live feeds by tenant (one per tenant with a stream past its catch-up)."""
        return dict(self._feeds)

    @property
    def streams(self) -> frozenset[WatchStream]:
        """Every open stream of this process."""
        return frozenset(self._streams)

    async def start(self) -> None:
        """Start listening (a database that is not reachable yet is retried in the
        background)."""
        await self.listener.start()

    def stream(
        self, tenant_id: str, selection: WatchFilter, resume_after: int | None = None
    ) -> WatchStream:
        """A new stream: a snapshot first, or every change after `resume_after`.
        The caller must `close()` it when done."""
        if self._closing:
            raise _shutting_down()
        if len(self._streams) >= self.settings.max_streams:
            raise ResourceExhausted(
                f"this replica serves its maximum of {self.settings.max_streams} WatchStatus "
                "streams; retry shortly (here or on another replica)",
                reason="WATCH_STREAMS_EXHAUSTED",
                retry_after=timedelta(seconds=1),
                metadata={"max_streams": str(self.settings.max_streams)},
            )
        stream = WatchStream(self, tenant_id, selection, resume_after)
        self._streams.add(stream)
        return stream

    def end_streams(self) -> None:
        """End every stream with UNAVAILABLE (the server is going away: clients resume on
        another replica) and refuse new ones."""
        self._closing = True
        for stream in tuple(self._streams):
            stream.end(_shutting_down())

    async def stop(self) -> None:
        """End the streams, stop the feeds and close the LISTEN connection."""
        self.end_streams()
        tasks = [feed.task for feed in self._feeds.values()] + list(self._stopping)
        for feed in self._feeds.values():
            feed.stop()
        self._feeds.clear()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.listener.stop()

    # -- for streams ---------------------------------------------------------------------

    async def snapshot(
        self, tenant_id: str, selection: WatchFilter
    ) -> tuple[int, list[Integration]]:
        """(revision, the selected integrations exactly as of that revision)."""
        return await store.snapshot(self.db, tenant_id, selection)

    async def read(
        self, tenant_id: str, after: int, limit: int, *, through: int = NEWEST
    ) -> HistoryPage:
        """A page of the tenant's history after `after`, up to `through`."""
        return await store.history(self.db, tenant_id, after, through=through, limit=limit)

    def join(self, tenant_id: str, inbox: Inbox) -> int:
        """Have the tenant's feed offer new events to `inbox` (starting the feed if needed);
        returns the feed's position: events up to it are the stream's to read itself."""
        feed = self._feeds.get(tenant_id)
        if feed is None:
            # The stream has just read the table up to inbox.after: start the feed there.
            # A page never holds more than an empty inbox takes, so a burst alone cannot
            # overflow a subscriber that keeps up.
            feed = TenantFeed(
                tenant_id,
                position=inbox.after,
                read=self._read_for_feed,
                poll_interval=self.settings.poll_interval.total_seconds(),
                page_size=min(self.settings.page_size, self.settings.buffer_size),
            )
            self._feeds[tenant_id] = feed
        return feed.join(inbox)

    def leave(self, stream: WatchStream, inbox: Inbox | None) -> None:
        """Forget a closed stream; stop its tenant's feed when no stream is left on it."""
        self._streams.discard(stream)
        feed = self._feeds.get(stream.tenant_id)
        if feed is None or inbox is None:
            return
        feed.leave(inbox)
        if not feed.inboxes:
            # Nobody left to serve: stop reading. A new stream starts a fresh feed.
            del self._feeds[stream.tenant_id]
            feed.stop()
            self._stopping.add(feed.task)
            feed.task.add_done_callback(self._stopping.discard)

    async def _read_for_feed(self, tenant_id: str, after: int, limit: int) -> HistoryPage:
        return await self.read(tenant_id, after, limit)

    def _on_change(self, tenant_id: str, revision: int) -> None:
        feed = self._feeds.get(tenant_id)
        if feed is not None:
            feed.wake(revision)

    def _wake_all(self) -> None:
        for feed in self._feeds.values():
            feed.wake()


class WatchStream:
    """One subscriber's stream of `WatchMessage`s: snapshot (or resume), catch-up from the
    table, then live changes from the tenant's feed, with heartbeats when quiet.

    Iterate it; it raises the ServiceError that ended it (RESOURCE_EXHAUSTED when the
    subscriber fell too far behind, UNAVAILABLE at shutdown, FAILED_PRECONDITION when the
    history it needs was compacted). `close()` is synchronous and idempotent, so it can run
    from a gRPC done-callback when the client goes away.
    """

    __slots__ = (
        "_closed",
        "_ended",
        "_inbox",
        "_joined_at",
        "_needs_snapshot",
        "_pending",
        "_read_through",
        "_resume_after",
        "hub",
        "position",
        "selection",
        "tenant_id",
    )

    def __init__(
        self, hub: WatchHub, tenant_id: str, selection: WatchFilter, resume_after: int | None
    ) -> None:
        self.hub = hub
        self.tenant_id = tenant_id
        self.selection = selection
        #: The newest revision the subscriber has been brought up to.
        self.position = resume_after or 0
        self._resume_after = resume_after
        self._read_through = self.position  # how far this stream has read the table
        self._joined_at: int | None = None  # the feed's position when this stream joined
        self._needs_snapshot = resume_after is None
        #: Messages read but not yet delivered (the snapshot, a page of catch-up).
        self._pending: deque[WatchMessage] | None = None
        self._inbox: Inbox | None = None
        self._ended: ServiceError | None = None
        self._closed = False

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchMessage:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._ended is not None:
                self._fail(self._ended)
            if self._pending:
                message = self._pending.popleft()
                if not self._pending:
                    self._pending = None
                return self._deliver(message)
            if self._needs_snapshot:
                await self._snapshot()
            elif self._inbox is None or self._joined_at is not None:
                await self._catch_up()
            else:
                return self._deliver(await self._live())

    def end(self, error: ServiceError) -> None:
        """End the stream with `error` at its next message."""
        if self._ended is None:
            self._ended = error
        if self._inbox is not None:
            self._inbox.fail(error)

    def close(self) -> None:
        """Release everything the stream holds (its place in the feed); a pending
        `__anext__` ends the iteration."""
        if not self._closed:
            self._closed = True
            self.hub.leave(self, self._inbox)
            if self._inbox is not None:
                self._inbox.fail(Unavailable("the stream was closed"))

    async def _snapshot(self) -> None:
        revision, integrations = await self.hub.snapshot(self.tenant_id, self.selection)
        self._queue(SnapshotItem(i) for i in integrations)
        self._queue((SnapshotComplete(revision),))
        self._read_through = revision
        self._needs_snapshot = False

    async def _catch_up(self) -> None:
        """Read one page of the table; join the feed once the head is reached."""
        through = NEWEST if self._joined_at is None else self._joined_at
        limit = self.hub.settings.page_size
        page = await self.hub.read(self.tenant_id, self._read_through, limit, through=through)
        self._check_history(page)
        self._queue(Change(e) for e in page.events if self.selection.selects(e))
        if len(page.events) >= limit:
            self._read_through = page.events[-1].revision
            return
        # Short page: everything up to the head (or to where the feed took over) is read.
        self._read_through = max(self._read_through, min(through, page.head))
        if self._inbox is None:
            self._inbox = Inbox(
                self.selection, after=self._read_through, capacity=self.hub.settings.buffer_size
            )
            joined_at = self.hub.join(self.tenant_id, self._inbox)
            # The feed may be behind us (it is about to read what we read: the inbox drops
            # it) or ahead of us (the events in between are ours to read from the table).
            self._joined_at = joined_at if joined_at > self._read_through else None
        else:
            self._joined_at = None

    def _queue(self, messages: Iterable[WatchMessage]) -> None:
        pending = self._pending if self._pending is not None else deque()
        pending.extend(messages)
        self._pending = pending or None  # an idle stream keeps no empty buffer

    async def _live(self) -> WatchMessage:
        assert self._inbox is not None
        interval = self.hub.settings.heartbeat_interval.total_seconds()
        try:
            event = await self._inbox.get(interval)
        except ServiceError as exc:
            if self._closed:
                raise StopAsyncIteration from None
            self._fail(exc)
        if event is not None:
            return Change(event)
        return Heartbeat(max(self.position, self._read_through, self._inbox.seen))

    def _check_history(self, page: HistoryPage) -> None:
        if page.compacted_through > self._read_through:
            self._fail(
                FailedPrecondition(
                    f"revision {self._read_through} is older than the retained history (compacted "
                    f"through revision {page.compacted_through}); start over from a snapshot: "
                    "watch without resume_after_revision",
                    reason="REVISION_COMPACTED",
                    metadata={
                        "resume_after_revision": str(self._read_through),
                        "compacted_through": str(page.compacted_through),
                    },
                )
            )
        if self._resume_after is not None and self._resume_after > page.head:
            self._fail(
                OutOfRange(
                    f"revision {self._resume_after} has not been written (the newest is "
                    f"{page.head}); start over from a snapshot: watch without "
                    "resume_after_revision",
                    reason="REVISION_AHEAD",
                    metadata={
                        "resume_after_revision": str(self._resume_after),
                        "newest_revision": str(page.head),
                    },
                )
            )
        self._resume_after = None  # checked on the first page only

    def _deliver(self, message: WatchMessage) -> WatchMessage:
        metrics.WATCH_DELIVERIES.inc()
        if isinstance(message, (SnapshotComplete, Change, Heartbeat)):
            self.position = max(self.position, message.revision)
        return message

    def _fail(self, error: ServiceError) -> NoReturn:
        self._ended = error  # an ended stream stays ended
        error.metadata.setdefault("resume_after_revision", str(self.position))
        raise error


def _shutting_down() -> Unavailable:
    return Unavailable(
        "the server is shutting down; resume on another replica after the last revision received",
        reason="SHUTTING_DOWN",
        retry_after=timedelta(0),
    )
