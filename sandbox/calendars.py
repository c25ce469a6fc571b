"""Google Calendar state: calendars, their events and the change sequence behind sync tokens.

Every change to a calendar (create, update, delete of an event) takes the next number of
that calendar's change sequence. A sync token is a position in the sequence; an incremental
sync returns the events whose last change lies after it. A full sync lists the events that
existed at the position where it started (in creation order), so events added, changed or
deleted while a client pages through are neither lost nor listed twice: they are reported by
the next incremental sync instead. Page and sync tokens carry the calendar's *epoch*, which
``invalidate_sync_tokens`` replaces, turning every outstanding token into HTTP 410.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from sandbox.clock import Clock

EventTime = date | datetime
"""An event boundary: a ``date`` for all-day events, an aware ``datetime`` otherwise."""

CONFIRMED = "confirmed"
CANCELLED = "cancelled"


class CalendarNotFound(LookupError):
    """No calendar has the requested id (Google answers 404 ``notFound``)."""


class EventNotFound(LookupError):
    """The calendar has no event with the requested id."""


class SyncTokenExpired(Exception):
    """The sync or page token predates an invalidation (Google answers 410 ``fullSyncRequired``)."""


class InvalidToken(ValueError):
    """A page or sync token that this sandbox never issued for this calendar (HTTP 400)."""

    def __init__(self, parameter: str) -> None:
        """Name the query ``parameter`` (``pageToken`` or ``syncToken``) that was wrong."""
        super().__init__(f"invalid {parameter}")
        self.parameter = parameter


@dataclass
class CalendarEvent:
    """One event as the provider holds it, including deleted ones (``status == "cancelled"``)."""

    id: str
    summary: str
    description: str
    start: EventTime
    end: EventTime
    created: datetime
    updated: datetime
    created_seq: int
    """The change number that created the event."""
    updated_seq: int
    """The change number of the event's last change (creation, update or deletion)."""
    status: str = CONFIRMED
    sequence: int = 0
    """The iCalendar SEQUENCE: bumped on every update."""

    @property
    def cancelled(self) -> bool:
        """Whether the event has been deleted."""
        return self.status == CANCELLED

    @property
    def etag(self) -> str:
        """A quoted entity tag that changes with every change of the event."""
        return f'"{int(self.updated.timestamp() * 1000)}{self.updated_seq:06d}"'


@dataclass
class Calendar:
    """A calendar: its events and its change sequence."""

    id: str
    summary: str
    time_zone: str
    updated: datetime
    epoch: str = field(default_factory=lambda: secrets.token_hex(4))
    """Replaced by an invalidation; tokens of an older epoch are stale."""
    seq: int = 0
    """The number of the calendar's latest change."""
    events: dict[str, CalendarEvent] = field(default_factory=dict)
    """Events by id, in creation order (a dict keeps insertion order)."""
    created: list[tuple[int, str]] = field(default_factory=list)
    """(created_seq, event id) in order: the index of full listings."""
    changes: list[tuple[int, str]] = field(default_factory=list)
    """(change number, event id) in order: the index of incremental listings. Entries that
    a later change of the same event superseded (or whose event was dropped) are skipped."""


@dataclass(frozen=True)
class EventPage:
    """One page of an events.list answer."""

    calendar: Calendar
    items: list[CalendarEvent]
    next_page_token: str | None
    """Set on every page but the last."""
    next_sync_token: str | None
    """Set on the last page only."""


@dataclass(frozen=True)
class _Position:
    """What a page or sync token encodes."""

    calendar_id: str
    epoch: str
    snapshot: int
    """The change number the listing is consistent with (the next sync token's position)."""
    since: int | None = None
    """Incremental listing: changes after this number; ``None`` for a full listing."""
    after: int = 0
    """Resume after this created_seq (full) or updated_seq (incremental)."""
    show_deleted: bool = False

    def encode(self) -> str:
        raw = json.dumps(
            [
                self.calendar_id,
                self.epoch,
                self.snapshot,
                self.since,
                self.after,
                self.show_deleted,
            ],
            separators=(",", ":"),
        )
        return base64.urlsafe_b64encode(raw.encode()).decode()

    @classmethod
    def decode(cls, token: str, parameter: str) -> _Position:
        try:
            values: Any = json.loads(base64.urlsafe_b64decode(token.encode()))
            cal, epoch, snapshot, since, after, show_deleted = values
            position = cls(cal, epoch, snapshot, since, after, show_deleted)
        except (binascii.Error, ValueError, TypeError, UnicodeError) as exc:
            raise InvalidToken(parameter) from exc
        if not (
            isinstance(cal, str)
            and isinstance(epoch, str)
            and isinstance(snapshot, int)
            and isinstance(after, int)
            and (since is None or isinstance(since, int))
            and isinstance(show_deleted, bool)
        ):
            raise InvalidToken(parameter)
        return position


class CalendarStore:
    """All calendars of the Google provider, keyed by calendar id (e.g. ``primary``)."""

    def __init__(self, clock: Clock, on_change: Callable[[str], None] | None = None) -> None:
        """Create an empty store reading the time from ``clock``; ``on_change`` hears of
        every change to a calendar's events (push channels notify their watchers)."""
        self._clock = clock
        self._calendars: dict[str, Calendar] = {}
        self._on_change = on_change or (lambda calendar_id: None)

    def add_calendar(self, calendar_id: str, summary: str = "", time_zone: str = "UTC") -> Calendar:
        """Create (or replace, with a new epoch and no events) the calendar ``calendar_id``."""
        calendar = Calendar(calendar_id, summary or calendar_id, time_zone, self._clock())
        self._calendars[calendar_id] = calendar
        return calendar

    def remove_calendar(self, calendar_id: str) -> None:
        """Delete a calendar; later requests for it answer 404."""
        self.calendar(calendar_id)
        del self._calendars[calendar_id]

    def calendar(self, calendar_id: str) -> Calendar:
        """The calendar ``calendar_id``, or ``CalendarNotFound``."""
        try:
            return self._calendars[calendar_id]
        except KeyError:
            raise CalendarNotFound(calendar_id) from None

    def calendar_ids(self) -> list[str]:
        """Every calendar id, in creation order."""
        return list(self._calendars)

    def put_event(
        self,
        calendar_id: str,
        event_id: str,
        *,
        summary: str,
        start: EventTime,
        end: EventTime,
        description: str = "",
    ) -> CalendarEvent:
        """Create or replace an event (restoring it if it was deleted); one change."""
        _check_times(start, end)
        calendar = self.calendar(calendar_id)
        seq, now = self._next_change(calendar)
        event = calendar.events.get(event_id)
        calendar.changes.append((seq, event_id))
        if event is None:
            event = CalendarEvent(event_id, summary, description, start, end, now, now, seq, seq)
            calendar.events[event_id] = event
            calendar.created.append((seq, event_id))
        else:
            event.summary, event.description = summary, description
            event.start, event.end = start, end
            event.status = CONFIRMED
            event.updated, event.updated_seq = now, seq
            event.sequence += 1
        self._on_change(calendar_id)
        return event

    def delete_event(self, calendar_id: str, event_id: str) -> CalendarEvent:
        """Cancel an event (it stays as a tombstone for incremental syncs); one change."""
        calendar = self.calendar(calendar_id)
        event = calendar.events.get(event_id)
        if event is None:
            raise EventNotFound(event_id)
        if not event.cancelled:
            event.updated_seq, event.updated = self._next_change(calendar)
            event.status = CANCELLED
            calendar.changes.append((event.updated_seq, event_id))
            self._on_change(calendar_id)
        return event

    def events(self, calendar_id: str, *, include_cancelled: bool = False) -> list[CalendarEvent]:
        """The calendar's events in creation order."""
        return [
            event
            for event in self.calendar(calendar_id).events.values()
            if include_cancelled or not event.cancelled
        ]

    def invalidate_sync_tokens(self, calendar_id: str, drop: Iterable[str] = ()) -> None:
        """Make every outstanding sync and page token stale (HTTP 410).

        ``drop`` names events that vanish without a tombstone, as a provider may do while
        clients are told to resync: only a full resync can notice they are gone.
        """
        calendar = self.calendar(calendar_id)
        calendar.epoch = secrets.token_hex(4)
        for event_id in drop:
            calendar.events.pop(event_id, None)

    def list_events(
        self,
        calendar_id: str,
        *,
        max_results: int = 250,
        page_token: str | None = None,
        sync_token: str | None = None,
        show_deleted: bool = False,
    ) -> EventPage:
        """Answer one events.list call (see the module docstring for the semantics)."""
        calendar = self.calendar(calendar_id)
        if page_token is not None:
            position = self._check(calendar, _Position.decode(page_token, "pageToken"), "pageToken")
        elif sync_token is not None:
            start = self._check(calendar, _Position.decode(sync_token, "syncToken"), "syncToken")
            position = _Position(calendar.id, calendar.epoch, calendar.seq, since=start.snapshot)
        else:
            position = _Position(
                calendar.id, calendar.epoch, calendar.seq, show_deleted=show_deleted
            )
        listing = (
            _full(calendar, position) if position.since is None else _delta(calendar, position)
        )
        # One event beyond the page tells whether another page follows.
        page = list(itertools.islice(listing, max_results + 1))
        items = [event for _, event in page[:max_results]]
        if len(page) > max_results:
            resume = replace(position, after=page[max_results - 1][0])
            return EventPage(calendar, items, resume.encode(), None)
        done = _Position(calendar.id, calendar.epoch, position.snapshot)
        return EventPage(calendar, items, None, done.encode())

    @staticmethod
    def _check(calendar: Calendar, position: _Position, parameter: str) -> _Position:
        if position.calendar_id != calendar.id:
            raise InvalidToken(parameter)
        if position.epoch != calendar.epoch or position.snapshot > calendar.seq:
            raise SyncTokenExpired(parameter)
        return position

    def _next_change(self, calendar: Calendar) -> tuple[int, datetime]:
        """Number and time of a new change to ``calendar``."""
        calendar.seq += 1
        calendar.updated = self._clock()
        return calendar.seq, calendar.updated


def _full(calendar: Calendar, position: _Position) -> Iterator[tuple[int, CalendarEvent]]:
    """(created_seq, event) of a full listing after ``position``, in creation order.

    Events created after the snapshot are left to the next incremental sync; events changed
    since are listed as they are now (and reported again by that sync).
    """
    start = bisect.bisect_right(calendar.created, position.after, key=lambda entry: entry[0])
    for index in range(start, len(calendar.created)):
        created_seq, event_id = calendar.created[index]
        if created_seq > position.snapshot:
            return
        event = calendar.events.get(event_id)
        if event is None or event.created_seq != created_seq:
            continue  # dropped by an invalidation (and perhaps re-created since)
        if position.show_deleted or not event.cancelled:
            yield created_seq, event


def _delta(calendar: Calendar, position: _Position) -> Iterator[tuple[int, CalendarEvent]]:
    """(change number, event) of the events whose last change lies in the listing's window."""
    after = max(position.after, position.since or 0)
    start = bisect.bisect_right(calendar.changes, after, key=lambda entry: entry[0])
    for index in range(start, len(calendar.changes)):
        seq, event_id = calendar.changes[index]
        if seq > position.snapshot:
            return  # later changes belong to the next incremental sync
        event = calendar.events.get(event_id)
        if event is not None and event.updated_seq == seq:
            yield seq, event


def _check_times(start: EventTime, end: EventTime) -> None:
    """Reject boundaries Google would reject: mixed kinds, naive datetimes, end before start."""
    if isinstance(start, datetime) != isinstance(end, datetime):
        raise ValueError("start and end must both be dates or both be datetimes")
    if isinstance(start, datetime) and isinstance(end, datetime):
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("event datetimes must carry a timezone")
        if end < start:
            raise ValueError("event end precedes its start")
    elif end < start:
        raise ValueError("event end precedes its start")
