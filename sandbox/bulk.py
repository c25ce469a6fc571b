"""Bulk data for load tests: many realistic events at once, without one request per event.

`make bench` syncs calendars and feeds of 100,000 events; putting them one control request at
a time would take longer than the benchmark. Generated events look like a busy team calendar:
a title, a paragraph of description, an hour-long slot on a working day. Generating again with
a later `revision` changes the first `count` events (an update each, for incremental syncs).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sandbox.calendars import CalendarStore
from sandbox.feeds import PRODID, Feed, FeedStore

_TITLES = ("Weekly sync", "Design review", "1:1", "Planning", "Customer call", "Retro")
_DESCRIPTION = (
    "Agenda: status of the quarter's goals, open questions from the last meeting, and what "
    "each team needs from the others. Notes go in the shared document; join by video link. "
)
_START = datetime(2027, 1, 4, 9, tzinfo=UTC)


def event_id(prefix: str, n: int) -> str:
    """The id of generated event `n` (Google ids are lowercase base32hex-like)."""
    return f"{prefix}{n:08d}"


def _slot(n: int) -> datetime:
    """An hour on a working day, spread over a few years."""
    day, hour = divmod(n, 8)
    week, weekday = divmod(day, 5)
    return _START + timedelta(weeks=week, days=weekday, hours=hour)


def generate_events(
    store: CalendarStore, calendar_id: str, count: int, *, prefix: str = "ev", revision: int = 0
) -> int:
    """Create (or, with a new `revision`, change) events 0…count-1 of a calendar; returns
    the calendar's change number afterwards."""
    for n in range(count):
        start = _slot(n)
        store.put_event(
            calendar_id,
            event_id(prefix, n),
            summary=f"{_TITLES[n % len(_TITLES)]} #{n} (v{revision})",
            description=_DESCRIPTION,
            start=start,
            end=start + timedelta(hours=1),
        )
    return store.calendar(calendar_id).seq


def generate_feed(store: FeedStore, name: str, count: int, *, revision: int = 0) -> Feed:
    """Serve a feed of `count` events, rendered from a template (icalendar would take
    minutes for 100,000 events; the text is what a calendar host serves)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR",
        f"PRODID:{PRODID}",
        "VERSION:2.0",
        "CALSCALE:GREGORIAN",
        f"X-WR-CALNAME:{name}",
    ]
    for n in range(count):
        start = _slot(n)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{event_id('feed', n)}@sandbox.example",
            f"DTSTAMP:{stamp}",
            f"SUMMARY:{_TITLES[n % len(_TITLES)]} #{n} (v{revision})",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(hours=1):%Y%m%dT%H%M%SZ}",
            f"LAST-MODIFIED:{stamp}",
            f"SEQUENCE:{revision}",
            f"DESCRIPTION:{_DESCRIPTION[:70]}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return store.set_raw(name, ("\r\n".join(lines) + "\r\n").encode())
