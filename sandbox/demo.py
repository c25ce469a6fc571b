"""The demo data a stand-alone sandbox starts with, so the quickstart has something to sync."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sandbox.datasets import Pagination
from sandbox.feeds import FeedEvent
from sandbox.state import SandboxState

CLIENT_ID = "sandbox-client"
CLIENT_SECRET = "sandbox-secret"
ACCESS_TOKEN = "sandbox-token"
CALENDAR_ID = "primary"
FEED = "demo"
DATASET = "contacts"


def seed(state: SandboxState) -> list[str]:
    """Fill ``state`` with a demo OAuth client, calendar, ICS feed and REST dataset.

    Returns what it serves, as lines to print (paths relative to the base URL).
    """
    now = state.clock().replace(minute=0, second=0, microsecond=0)
    today = now.date()

    state.oauth.add_client(CLIENT_ID, CLIENT_SECRET)
    state.add_access_token(ACCESS_TOKEN, expires_in=10 * 365 * 24 * 3600)

    state.google.add_calendar(CALENDAR_ID, "Demo calendar")
    timed: list[tuple[str, str, datetime, timedelta]] = [
        ("standup", "Daily stand-up", now + timedelta(days=1, hours=1), timedelta(minutes=15)),
        ("review", "Design review", now + timedelta(days=2, hours=3), timedelta(hours=1)),
        ("retro", "Retrospective", now + timedelta(days=5), timedelta(minutes=45)),
    ]
    for event_id, summary, start, length in timed:
        state.google.put_event(
            CALENDAR_ID, event_id, summary=summary, start=start, end=start + length
        )
    offsite = today + timedelta(days=7)
    state.google.put_event(
        CALENDAR_ID,
        "offsite",
        summary="Team offsite",
        start=offsite,
        end=offsite + timedelta(days=1),
    )

    state.feeds.set_feed(
        FEED,
        [
            _holiday("new-year", "New Year's Day", date(today.year + 1, 1, 1)),
            _holiday("midsummer", "Midsummer", date(today.year + 1, 6, 21)),
            FeedEvent(
                "launch",
                "Product launch",
                now + timedelta(days=3),
                now + timedelta(days=3, hours=2),
            ),
        ],
    )

    contacts = [
        {"id": f"c{n}", "name": name, "email": f"{name.lower()}@example.com"}
        for n, name in enumerate(["Ada", "Grace", "Linus", "Barbara", "Ken"], start=1)
    ]
    state.datasets.set_dataset(DATASET, contacts, pagination=Pagination.BODY_LINK, page_size=2)

    return [
        f"OAuth client      client_id={CLIENT_ID} client_secret={CLIENT_SECRET}",
        "  authorize       GET  /oauth2/auth",
        "  token           POST /oauth2/token",
        f"Access token      Authorization: Bearer {ACCESS_TOKEN}",
        f"Google Calendar   GET  /calendar/v3/calendars/{CALENDAR_ID}/events (4 events)",
        f"ICS feed          GET  /ics/{FEED}.ics (3 events)",
        f"REST dataset      GET  /api/{DATASET} (5 records, 2 per page, next link in body)",
        "Control API       /_control/... (state, faults, gates, requests, reset)",
    ]


def _holiday(uid: str, summary: str, day: date) -> FeedEvent:
    return FeedEvent(uid, summary, day, day + timedelta(days=1))
