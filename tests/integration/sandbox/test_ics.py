"""The sandbox's iCalendar feeds over real HTTP: the document, conditional requests, basic
auth, raw bodies, faults."""

from __future__ import annotations

from datetime import date, timedelta

import aiohttp
import icalendar
import pytest

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.credentials import BasicAuth
from sandbox.feeds import FeedEvent
from tests.support.sandbox_http import T0, basic


def feed_events() -> list[FeedEvent]:
    return [
        FeedEvent("a@x", "Alpha", T0, T0 + timedelta(hours=1), sequence=2),
        FeedEvent("b@x", "Beta", date(2030, 1, 8), date(2030, 1, 9)),
    ]


async def test_ics_feed_document_and_conditional_requests(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.feeds.set_feed("team", feed_events())
    url = f"{sb.url}/ics/team.ics"
    async with http.get(url) as response:
        assert response.status == 200
        assert response.content_type == "text/calendar"
        etag = response.headers["ETag"]
        last_modified = response.headers["Last-Modified"]
        document = icalendar.Calendar.from_ical(await response.read())
    assert etag.startswith('"') and not etag.startswith("W/")
    vevents = {str(e["UID"]): e for e in document.walk("VEVENT")}
    assert set(vevents) == {"a@x", "b@x"}
    assert str(vevents["a@x"]["SUMMARY"]) == "Alpha"
    assert vevents["a@x"]["SEQUENCE"] == 2
    assert vevents["a@x"].decoded("DTSTART") == T0
    assert vevents["b@x"].decoded("DTSTART") == date(2030, 1, 8)
    assert "LAST-MODIFIED" in vevents["b@x"]

    for headers in ({"If-None-Match": etag}, {"If-Modified-Since": last_modified}):
        async with http.get(url, headers=headers) as response:
            assert response.status == 304
            assert response.headers["ETag"] == etag
    async with http.get(url, headers={"If-None-Match": '"stale"'}) as response:
        assert response.status == 200

    sb.state.feeds.put_event("team", FeedEvent("c@x", "Gamma", T0, T0 + timedelta(hours=2)))
    async with http.get(url, headers={"If-None-Match": etag}) as response:
        assert response.status == 200
        assert response.headers["ETag"] != etag
        assert b"UID:c@x" in await response.read()


async def test_ics_basic_auth_raw_body_and_missing_feed(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.feeds.set_feed("private", feed_events(), auth=BasicAuth("me", "pw"))
    url = f"{sb.url}/ics/private.ics"
    for headers in ({}, basic("me", "wrong")):
        async with http.get(url, headers=headers) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Basic ")
    async with http.get(url, headers=basic("me", "pw")) as response:
        assert response.status == 200

    sb.state.feeds.set_raw("private", "BEGIN:VCALENDAR\r\nnot really")
    async with http.get(url, headers=basic("me", "pw")) as response:
        assert await response.text() == "BEGIN:VCALENDAR\r\nnot really"

    async with http.get(f"{sb.url}/ics/nope.ics") as response:
        assert response.status == 404


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (FaultKind.NOT_FOUND, 404),
        (FaultKind.UNAUTHORIZED, 401),
        (FaultKind.FORBIDDEN, 403),
        (FaultKind.TOO_MANY_REQUESTS, 429),
        (FaultKind.SERVER_ERROR, 500),
        (FaultKind.UNAVAILABLE, 503),
    ],
)
async def test_ics_faults(
    sb: Sandbox, http: aiohttp.ClientSession, kind: FaultKind, status: int
) -> None:
    sb.state.feeds.set_feed("team", feed_events())
    sb.state.inject(Provider.ICS, Fault(kind), resource="team")
    async with http.get(f"{sb.url}/ics/team.ics") as response:
        assert response.status == status
        assert ("WWW-Authenticate" in response.headers) == (status == 401)
