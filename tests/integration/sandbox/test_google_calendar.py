"""The sandbox's Google Calendar API over real HTTP: full and incremental sync, paging while
the calendar changes, invalidated sync tokens, token and parameter errors, the probe."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import aiohttp

from sandbox import Provider, Sandbox
from tests.support.sandbox_http import T0, TOKEN, events


def put(sb: Sandbox, event_id: str, hour: int = 0, summary: str | None = None) -> None:
    """Add or change a timed event of ``primary``."""
    start = T0 + timedelta(hours=hour)
    sb.state.google.put_event(
        "primary",
        event_id,
        summary=summary or f"event {event_id}",
        start=start,
        end=start + timedelta(minutes=30),
    )


async def sync_all(
    http: aiohttp.ClientSession, sb: Sandbox, **params: str | int
) -> tuple[list[dict[str, Any]], str, int]:
    """Follow pages to the end: the items, the sync token and the number of pages."""
    items: list[dict[str, Any]] = []
    pages = 0
    while True:
        status, body = await events(http, sb, "primary", TOKEN, **params)
        assert status == 200, body
        pages += 1
        items += body["items"]
        if "nextPageToken" not in body:
            assert "nextSyncToken" in body
            return items, body["nextSyncToken"], pages
        assert "nextSyncToken" not in body
        params = {k: v for k, v in params.items() if k == "maxResults"}
        params["pageToken"] = body["nextPageToken"]


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


async def test_full_sync_pages_through_every_event_once(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for n in range(5):
        put(sb, f"e{n}", hour=n)
    sb.state.google.delete_event("primary", "e2")

    items, _, pages = await sync_all(http, sb, maxResults=2)

    assert pages == 2
    assert ids(items) == ["e0", "e1", "e3", "e4"]
    first = items[0]
    assert first["status"] == "confirmed"
    assert first["summary"] == "event e0"
    assert first["start"] == {"dateTime": "2030-01-07T09:00:00Z"}
    assert first["end"] == {"dateTime": "2030-01-07T09:30:00Z"}
    assert first["etag"].startswith('"') and first["updated"].endswith("Z")
    assert first["htmlLink"].startswith("https://www.google.com/calendar/event?eid=")

    with_deleted, _, _ = await sync_all(http, sb, maxResults=2, showDeleted="true")
    assert ids(with_deleted) == ["e0", "e1", "e2", "e3", "e4"]
    assert with_deleted[2]["status"] == "cancelled"


async def test_all_day_events_use_date(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    day = date(2030, 2, 1)
    sb.state.google.put_event(
        "primary", "offsite", summary="Offsite", start=day, end=day + timedelta(days=1)
    )
    _, body = await events(http, sb)
    assert body["items"][0]["start"] == {"date": "2030-02-01"}
    assert body["items"][0]["end"] == {"date": "2030-02-02"}


async def test_incremental_sync_reports_additions_changes_and_deletions(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for n in range(3):
        put(sb, f"e{n}", hour=n)
    _, sync_token, _ = await sync_all(http, sb)

    put(sb, "new", hour=9)
    put(sb, "e0", summary="moved")
    sb.state.google.delete_event("primary", "e1")

    status, body = await events(http, sb, syncToken=sync_token)
    assert status == 200
    changed = {item["id"]: item for item in body["items"]}
    assert set(changed) == {"new", "e0", "e1"}
    assert changed["e0"]["summary"] == "moved"
    assert changed["e0"]["sequence"] == 1
    assert changed["e1"]["status"] == "cancelled"
    assert "nextPageToken" not in body

    status, again = await events(http, sb, syncToken=body["nextSyncToken"])
    assert (status, again["items"]) == (200, [])


async def test_incremental_sync_pages_consistently_while_the_calendar_changes(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    _, sync_token, _ = await sync_all(http, sb)
    for n in range(5):
        put(sb, f"e{n}")
    _, first = await events(http, sb, maxResults=2, syncToken=sync_token)
    assert ids(first["items"]) == ["e0", "e1"]

    put(sb, "e0", summary="changed after it was listed")
    put(sb, "e4", summary="changed before it was listed")
    rest, next_token, pages = await sync_all(
        http, sb, maxResults=2, pageToken=first["nextPageToken"]
    )

    # Changes made while paging belong to the next incremental sync, not to this one.
    assert (ids(first["items"] + rest), pages) == (["e0", "e1", "e2", "e3"], 1)
    _, delta = await events(http, sb, syncToken=next_token)
    assert ids(delta["items"]) == ["e0", "e4"]


async def test_changes_between_pages_are_neither_lost_nor_duplicated(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for n in range(6):
        put(sb, f"e{n}", hour=n)
    _, first = await events(http, sb, maxResults=2)
    assert ids(first["items"]) == ["e0", "e1"]

    put(sb, "e1", summary="e1 changed after it was listed")
    put(sb, "e4", summary="e4 changed before it was listed")
    sb.state.google.delete_event("primary", "e3")
    put(sb, "late", hour=20)

    rest, sync_token, _ = await sync_all(http, sb, maxResults=2, pageToken=first["nextPageToken"])
    listed = ids(first["items"]) + ids(rest)
    assert len(listed) == len(set(listed))
    assert listed == ["e0", "e1", "e2", "e4", "e5"]

    _, delta = await events(http, sb, syncToken=sync_token)
    by_id = {item["id"]: item for item in delta["items"]}
    assert set(by_id) == {"e1", "e3", "e4", "late"}
    assert by_id["e3"]["status"] == "cancelled"

    # Replaying the listing and then the delta converges on the provider's current state.
    replica = {item["id"]: item for item in first["items"] + rest}
    for item in delta["items"]:
        if item["status"] == "cancelled":
            replica.pop(item["id"], None)
        else:
            replica[item["id"]] = item
    current = {e.id: e.summary for e in sb.state.google.events("primary")}
    assert {i: item["summary"] for i, item in replica.items()} == current


async def test_invalidated_sync_token_gets_410_and_full_resync_drops_vanished_events(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    for n in range(3):
        put(sb, f"e{n}")
    _, sync_token, _ = await sync_all(http, sb)
    _, page = await events(http, sb, maxResults=1)

    sb.state.google.invalidate_sync_tokens("primary", drop=["e1"])

    for params in ({"syncToken": sync_token}, {"pageToken": page["nextPageToken"]}):
        status, body = await events(http, sb, **params)
        assert status == 410
        assert body == {
            "error": {
                "code": 410,
                "message": "Sync token is no longer valid, a full sync is required.",
                "errors": [
                    {
                        "domain": "global",
                        "reason": "fullSyncRequired",
                        "message": "Sync token is no longer valid, a full sync is required.",
                    }
                ],
            }
        }
    items, fresh_token, _ = await sync_all(http, sb)
    assert ids(items) == ["e0", "e2"]
    status, _ = await events(http, sb, syncToken=fresh_token)
    assert status == 200


async def test_google_rejects_missing_expired_and_unknown_tokens(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.add_access_token("expired", expires_in=0)
    for token in (None, "expired", "never-issued"):
        status, body = await events(http, sb, token=token)
        assert status == 401
        error = body["error"]
        assert error["code"] == 401
        assert error["status"] == "UNAUTHENTICATED"
        assert error["message"].startswith("Request had invalid authentication credentials.")
        assert error["errors"] == [
            {
                "message": "Invalid Credentials",
                "domain": "global",
                "reason": "authError",
                "location": "Authorization",
                "locationType": "header",
            }
        ]


async def test_google_unknown_calendar_and_bad_parameters(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    status, body = await events(http, sb, calendar="nobody@example.com")
    assert status == 404
    assert body == {
        "error": {
            "code": 404,
            "message": "Not Found",
            "errors": [{"domain": "global", "reason": "notFound", "message": "Not Found"}],
        }
    }
    for params in ({"pageToken": "garbage"}, {"syncToken": "Zm9v"}, {"maxResults": 0}):
        status, body = await events(http, sb, **params)
        assert status == 400
        assert body["error"]["errors"][0]["reason"] == "invalid"
        assert body["error"]["errors"][0]["location"] == next(iter(params))


async def test_calendar_get_serves_as_a_connection_probe(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Sandbox-Purpose": "probe"}
    async with http.get(f"{sb.url}/calendar/v3/calendars/primary", headers=headers) as response:
        assert response.status == 200
        assert (await response.json())["summary"] == "Work"
    assert [e.purpose for e in sb.state.log.entries(provider=Provider.GOOGLE)] == ["probe"]
