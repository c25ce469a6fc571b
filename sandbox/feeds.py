"""iCalendar feed state: named feeds of events, rendered once per change with ``icalendar``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime

import icalendar

from sandbox.calendars import EventTime
from sandbox.clock import Clock
from sandbox.credentials import BasicAuth

PRODID = "-//Integrations Sandbox//ICS feed//EN"


class FeedNotFound(LookupError):
    """No feed has the requested name."""


@dataclass(frozen=True)
class FeedEvent:
    """One VEVENT of a feed."""

    uid: str
    summary: str
    start: EventTime
    end: EventTime
    last_modified: datetime | None = None
    """LAST-MODIFIED; ``None`` = when the event was put into the feed."""
    sequence: int = 0
    description: str = ""


@dataclass
class Feed:
    """A feed's events, credentials and the document currently served for it."""

    name: str
    events: dict[str, FeedEvent]
    auth: BasicAuth | None
    changed_at: datetime
    """When the served document last changed (the ``Last-Modified`` header)."""
    raw_body: bytes | None = None
    """A verbatim document that replaces the rendered one (for malformed-feed tests)."""
    body: bytes = field(init=False, default=b"")
    etag: str = field(init=False, default="")

    def render(self) -> None:
        """Regenerate ``body`` and its strong ``etag`` from the events (or the raw body)."""
        self.body = self.raw_body if self.raw_body is not None else _to_ical(self)
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


class FeedStore:
    """All ICS feeds, by name."""

    def __init__(self, clock: Clock) -> None:
        """Create an empty store reading the time from ``clock``."""
        self._clock = clock
        self._feeds: dict[str, Feed] = {}

    def set_feed(
        self, name: str, events: list[FeedEvent], *, auth: BasicAuth | None = None
    ) -> Feed:
        """Create or replace a feed with exactly ``events`` (and drop any raw body)."""
        now = self._clock()
        stamped = {e.uid: _stamped(e, now) for e in events}
        feed = Feed(name, stamped, auth, now)
        feed.render()
        self._feeds[name] = feed
        return feed

    def set_raw(self, name: str, body: str | bytes) -> Feed:
        """Serve ``body`` verbatim for ``name`` (creating the feed if needed; auth is kept)."""
        feed = self._feeds.get(name) or self.set_feed(name, [])
        feed.raw_body = body.encode() if isinstance(body, str) else body
        self._changed(feed)
        return feed

    def put_event(self, name: str, event: FeedEvent) -> Feed:
        """Add or replace one event of an existing feed."""
        feed = self.feed(name)
        feed.events[event.uid] = _stamped(event, self._clock())
        self._changed(feed)
        return feed

    def delete_event(self, name: str, uid: str) -> Feed:
        """Remove one event from a feed (no-op if absent)."""
        feed = self.feed(name)
        feed.events.pop(uid, None)
        self._changed(feed)
        return feed

    def remove_feed(self, name: str) -> None:
        """Delete a feed; it then answers 404."""
        self.feed(name)
        del self._feeds[name]

    def feed(self, name: str) -> Feed:
        """The feed ``name``, or ``FeedNotFound``."""
        try:
            return self._feeds[name]
        except KeyError:
            raise FeedNotFound(name) from None

    def names(self) -> list[str]:
        """Every feed name."""
        return list(self._feeds)

    def _changed(self, feed: Feed) -> None:
        feed.changed_at = self._clock()
        feed.render()


def _stamped(event: FeedEvent, now: datetime) -> FeedEvent:
    return event if event.last_modified is not None else replace(event, last_modified=now)


def _to_ical(feed: Feed) -> bytes:
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", feed.name)
    for event in feed.events.values():
        vevent = icalendar.Event()
        vevent.add("uid", event.uid)
        vevent.add("dtstamp", feed.changed_at)
        vevent.add("summary", event.summary)
        vevent.add("dtstart", event.start)
        vevent.add("dtend", event.end)
        vevent.add("last-modified", event.last_modified or feed.changed_at)
        vevent.add("sequence", event.sequence)
        if event.description:
            vevent.add("description", event.description)
        calendar.add_component(vevent)
    calendar.add_missing_timezones()
    body: bytes = calendar.to_ical()
    return body
