"""iCalendar feeds over HTTP(S), fetched with conditional GETs.

A feed is one document holding every event, so each sync is a full listing in one page: events
missing from the document are deleted. The cursor keeps the document's validators (ETag,
Last-Modified) and a digest, so an unchanged feed costs a 304 (or, from a server without
validators, one download and no parsing) and writes no record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from datetime import date, datetime
from typing import Any

import icalendar
from yarl import URL

from service.connectors.auth import static_headers
from service.connectors.base import (
    ConfigField,
    Connector,
    Cursor,
    FieldKind,
    Page,
    PageKind,
    Source,
)
from service.connectors.http import Response, redact, retry_after
from service.connectors.provider_failures import from_status, malformed

ACCEPT = "text/calendar, text/plain;q=0.5, */*;q=0.1"


class IcsFeedConnector(Connector):
    """Syncs the events of an .ics feed."""

    type = "ics_feed"
    description = "The events of an iCalendar (.ics) feed."
    fields = (
        ConfigField(
            "url",
            "The feed URL (http, https or webcal).",
            required=True,
            kind=FieldKind.URL,
            allowed=("http", "https", "webcal"),
        ),
    )
    credential_kinds = frozenset({"basic", "bearer_token"})

    async def fetch(self, source: Source, cursor: Cursor | None) -> Page:
        url = feed_url(str(source.config["url"]))
        what = f"The feed at {url.host}"
        headers = {"Accept": ACCEPT, **_conditions(cursor)}
        response = await source.http.get(
            url, what=what, headers=headers, credentials=static_headers(source.credentials)
        )
        if response.status == 304 and cursor:
            return Page(PageKind.CHANGES, {}, [], cursor, last=True)
        if response.status != 200:
            raise from_status(
                response.status,
                what=what,
                retry_after=retry_after(response),
                context={"url": redact(response.url)},
            )
        # Hashing and parsing a big feed takes seconds of CPU: a worker process does it, so
        # the event loop (every other integration, every RPC) never waits for it.
        return await source.parse(len(response.body), _listing, response, what, cursor)


def _listing(response: Response, what: str, cursor: Cursor | None) -> Page:
    """The feed as a full listing, or nothing new when it is the feed the cursor has seen."""
    digest = hashlib.sha256(response.body).hexdigest()
    after = {
        "etag": response.headers.get("ETag"),
        "last_modified": response.headers.get("Last-Modified"),
        "digest": digest,
    }
    if cursor and cursor.get("digest") == digest:
        return Page(PageKind.CHANGES, {}, [], after, last=True)
    return Page.of(PageKind.FULL_START, events(response, what), after, last=True)


def feed_url(configured: str) -> URL:
    """The URL to fetch: webcal:// is the same feed over https."""
    url = URL(configured)
    return url.with_scheme("https") if url.scheme == "webcal" else url


def _conditions(cursor: Cursor | None) -> dict[str, str]:
    if not cursor:
        return {}
    headers = {}
    if cursor.get("etag"):
        headers["If-None-Match"] = str(cursor["etag"])
    if cursor.get("last_modified"):
        headers["If-Modified-Since"] = str(cursor["last_modified"])
    return headers


def events(response: Response, what: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(record id, event as JSON) for every VEVENT of the feed; an overridden occurrence of a
    recurring event is its own record (UID#RECURRENCE-ID)."""
    body = response.body.removeprefix(b"\xef\xbb\xbf")
    if not body.lstrip().upper().startswith(b"BEGIN:VCALENDAR"):
        raise malformed(
            f"{what} answered with something that is not an iCalendar document",
            url=redact(response.url),
            content_type=response.headers.get("Content-Type", ""),
            excerpt=response.excerpt(),
        )
    try:
        calendar = icalendar.Calendar.from_ical(body)
        vevents = list(calendar.walk("VEVENT"))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise malformed(
            f"{what} sent an iCalendar document that does not parse",
            url=redact(response.url),
            error=response.quote(str(exc)[:600])[:300],
            excerpt=response.excerpt(),
        ) from None
    for vevent in vevents:
        data = event_json(vevent)
        yield _record_id(vevent, data), data


def event_json(vevent: Any) -> dict[str, Any]:
    """A VEVENT's properties as JSON: lower-case names, dates in ISO 8601, repeated
    properties (ATTENDEE, EXDATE…) as lists."""
    data: dict[str, Any] = {}
    for name, value in vevent.items():
        data[name.lower()] = _json(value)
    return data


def _record_id(vevent: Any, data: Mapping[str, Any]) -> str:
    uid = str(vevent.get("UID") or "")
    if not uid:
        # RFC 5545 requires a UID; without one the content is the only identity there is.
        uid = "sha256:" + hashlib.sha256(vevent.to_ical()).hexdigest()[:32]
    recurrence = data.get("recurrence-id")
    return f"{uid}#{recurrence}" if recurrence else uid


def _json(value: Any) -> Any:
    if isinstance(value, list):
        return [_json(v) for v in value]
    moment = getattr(value, "dt", None)
    if isinstance(moment, datetime | date):
        return moment.isoformat()
    dts = getattr(value, "dts", None)  # EXDATE / RDATE lists
    if isinstance(dts, list):
        return [_json(v) for v in dts]
    # Plain values, not icalendar's subclasses of them: those carry parameters, and rebuild
    # them when a page comes back from a worker process.
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    to_ical = getattr(value, "to_ical", None)
    if callable(to_ical):
        raw = to_ical()
        return raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
    return str(value)
