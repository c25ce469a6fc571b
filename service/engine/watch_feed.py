"""One tenant's live feed of changes, and the bounded inbox of each stream it serves.

A feed reads `events WHERE revision > position` whenever it is woken (a notification, the
listener reconnecting) and every poll interval as a safety net, and offers each event to
every inbox. Offering never waits: an inbox that is full ends its stream with
RESOURCE_EXHAUSTED, so one slow subscriber never holds up the feed or the others.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable

import structlog

from service.domain.exceptions import FailedPrecondition, ResourceExhausted, ServiceError
from service.domain.model import Event
from service.domain.watch import WatchFilter
from service.observability import metrics
from service.storage.watch import HistoryPage

log = structlog.get_logger(__name__)

#: Reads a page of a tenant's history: (tenant, after revision, limit) -> page.
HistoryReader = Callable[[str, int, int], Awaitable[HistoryPage]]

_FIRST_RETRY = 0.1
_LAST_RETRY = 5.0


class Inbox:
    """The bounded buffer between a tenant's feed and one stream.

    A process holds one per open stream, and most are idle most of the time: an idle inbox
    holds no buffer (one is made for the events that arrive, and dropped once they are taken)
    and waits on one future with one timer.

    The timer is armed once and re-armed only when it fires early, not for every wait: a
    stream that is sent a change every 50 ms would otherwise make (and cancel) 20 timers a
    second, for a heartbeat due every 30 s. Made on the loop that serves it (`get` runs
    there), so it never asks for the running loop (on Python 3.11 that costs a getpid
    system call)."""

    __slots__ = (
        "_deadline",
        "_events",
        "_loop",
        "_timer",
        "_waiter",
        "after",
        "capacity",
        "error",
        "seen",
        "selection",
    )

    def __init__(self, selection: WatchFilter, *, after: int, capacity: int) -> None:
        self.selection = selection
        #: The stream has (or will have) read everything up to here from the table itself.
        self.after = after
        self.capacity = capacity
        #: The feed has offered everything up to here.
        self.seen = after
        self.error: ServiceError | None = None
        self._events: deque[Event] | None = None
        self._loop = asyncio.get_running_loop()
        #: What `get` waits on: done when an event or an error arrives (True) or its time is
        #: up (False).
        self._waiter: asyncio.Future[bool] | None = None
        #: When the current wait's time is up (loop time), and the timer that will tell.
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, event: Event) -> None:
        """Take the event if the stream selects it; never waits."""
        if self.error is not None or event.revision <= self.after:
            return
        if not self.selection.selects(event):
            return
        events = self._events
        if events is None:
            events = self._events = deque()
        if len(events) >= self.capacity:
            metrics.WATCH_OVERFLOWS.inc()
            self.fail(
                ResourceExhausted(
                    f"the subscriber fell more than {self.capacity} changes behind; resume from "
                    "the last revision received",
                    reason="WATCH_BUFFER_OVERFLOW",
                    metadata={"buffer_size": str(self.capacity)},
                )
            )
            return
        events.append(event)
        _settle(self._waiter, True)

    def advance(self, revision: int) -> None:
        """The feed has offered every event up to `revision`."""
        self.seen = max(self.seen, revision)

    def fail(self, error: ServiceError) -> None:
        """End the stream with `error` (the first one wins); buffered events are dropped,
        the client resumes after the last one it received."""
        if self.error is None:
            self.error = error
            self._events = None
            _settle(self._waiter, True)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    async def get(self, timeout: float) -> Event | None:
        """The next event, None when none came within `timeout`; raises the stream's error."""
        while True:
            if self.error is not None:
                raise self.error
            events = self._events
            if events:
                event = events.popleft()
                if not events:
                    self._events = None
                return event
            loop = self._loop
            deadline = self._deadline = loop.time() + timeout
            timer = self._timer
            if timer is None or timer.when() > deadline:  # (a shorter timeout than before)
                if timer is not None:
                    timer.cancel()
                self._timer = loop.call_at(deadline, self._time_up)
            waiter = self._waiter = loop.create_future()
            try:
                woken = await waiter
            finally:
                self._waiter = None
            if not woken:
                return None

    def _time_up(self) -> None:
        """The timer fired: time is up for the wait in progress, or (it began later) the
        timer waits out the rest of it. With no wait in progress, the next one arms it."""
        self._timer = None
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._loop.time() < self._deadline:
            self._timer = self._loop.call_at(self._deadline, self._time_up)
        else:
            waiter.set_result(False)


def _settle(waiter: asyncio.Future[bool] | None, woken: bool) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(woken)


class TenantFeed:
    """Reads one tenant's new events on wake-ups and fans them out to its inboxes."""

    def __init__(
        self,
        tenant_id: str,
        *,
        position: int,
        read: HistoryReader,
        poll_interval: float,
        page_size: int,
    ) -> None:
        self.tenant_id = tenant_id
        #: Every event up to here has been offered.
        self.position = position
        self.inboxes: set[Inbox] = set()
        self._read = read
        self._poll_interval = poll_interval
        self._page_size = page_size
        self._wake = asyncio.Event()
        # Read at once: notifications that came before this feed existed were dropped.
        self._wake.set()
        self.task = asyncio.create_task(self._run(), name=f"watch-feed:{tenant_id}")

    def join(self, inbox: Inbox) -> int:
        """Start offering to `inbox`; returns the position from which offers begin (events
        up to it are the stream's to read from the table)."""
        self.inboxes.add(inbox)
        return self.position

    def leave(self, inbox: Inbox) -> None:
        self.inboxes.discard(inbox)

    def wake(self, revision: int | None = None) -> None:
        """Something was committed (at `revision`, when known): read the table."""
        if revision is None or revision > self.position:
            self._wake.set()

    def stop(self) -> None:
        self.task.cancel()

    async def _run(self) -> None:
        delay = _FIRST_RETRY
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()
            # Cleared before reading: a wake-up during the read triggers another read.
            self._wake.clear()
            try:
                await self.read_new()
                delay = _FIRST_RETRY
            except Exception as exc:
                # The database may be restarting; the listener's reconnection or the next
                # retry catches up from the table, so nothing is lost by waiting.
                log.warning(
                    "watch_feed_read_failed",
                    tenant_id=self.tenant_id,
                    error=repr(exc),
                    retry_in=delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LAST_RETRY)
                self._wake.set()

    async def read_new(self) -> None:
        """Offer every event committed after `position`, page by page."""
        while True:
            page = await self._read(self.tenant_id, self.position, self._page_size)
            if page.compacted_through > self.position:
                self._lost_history(page.compacted_through)
                continue
            # Offering never waits, so no stream joins or leaves until the page is offered:
            # one copy of the set serves the whole page.
            inboxes = tuple(self.inboxes)
            for event in page.events:
                for inbox in inboxes:
                    inbox.offer(event)
                self.position = event.revision
            full = len(page.events) >= self._page_size
            if not full:
                # Everything up to the head has been read (events in between belonged to
                # integrations deleted since), so the position may move to it.
                self.position = max(self.position, page.head)
            for inbox in inboxes:
                inbox.advance(self.position)
            if not full:
                return

    def _lost_history(self, compacted_through: int) -> None:
        """The feed fell further behind than the retention window (it was stuck for that
        long): inboxes that needed the compacted events end and must re-snapshot."""
        log.error(
            "watch_feed_behind_retention",
            tenant_id=self.tenant_id,
            position=self.position,
            compacted_through=compacted_through,
        )
        for inbox in tuple(self.inboxes):
            if inbox.after < compacted_through:
                inbox.fail(
                    FailedPrecondition(
                        "this stream fell behind the retained history; start over from a snapshot",
                        reason="REVISION_COMPACTED",
                        metadata={
                            "resume_after_revision": str(max(inbox.after, self.position)),
                            "compacted_through": str(compacted_through),
                        },
                    )
                )
        self.position = compacted_through
