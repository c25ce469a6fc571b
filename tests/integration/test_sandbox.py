"""The sandbox provider over real HTTP: Google Calendar, OAuth, ICS, REST, faults and controls."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import sys
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import icalendar
import pytest
from yarl import URL

from sandbox import Fault, FaultKind, Provider, Sandbox, SandboxState
from sandbox.credentials import BasicAuth
from sandbox.datasets import AuthKind, DatasetAuth, Pagination
from sandbox.feeds import FeedEvent

TOKEN = "test-token"
T0 = datetime(2030, 1, 7, 9, 0, tzinfo=UTC)
SAFETY = 5.0  # seconds; a safety net for awaits that must never hang, never a sleep


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    """A running sandbox with a ``primary`` calendar and a valid static token."""
    async with Sandbox() as sandbox:
        sandbox.state.add_access_token(TOKEN)
        sandbox.state.google.add_calendar("primary", "Work")
        yield sandbox


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session without a connection cap, so many requests can be held at once."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


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


async def events(
    http: aiohttp.ClientSession,
    sb: Sandbox,
    calendar: str = "primary",
    token: str | None = TOKEN,
    **params: str | int,
) -> tuple[int, dict[str, Any]]:
    """Call events.list; return the status and the JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{sb.url}/calendar/v3/calendars/{calendar}/events"
    query = {k: str(v) for k, v in params.items()}
    async with http.get(url, params=query, headers=headers) as response:
        return response.status, await response.json()


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


def basic(username: str, password: str) -> dict[str, str]:
    """Headers carrying HTTP basic credentials."""
    return {"Authorization": aiohttp.encode_basic_auth(username, password)}


def ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


# --- Google Calendar ---------------------------------------------------------------------


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


# --- Faults ------------------------------------------------------------------------------

GOOGLE_FAULTS = [
    (Fault(FaultKind.NOT_FOUND), 404, "global", "notFound"),
    (Fault(FaultKind.UNAUTHORIZED), 401, "global", "authError"),
    (Fault(FaultKind.FORBIDDEN), 403, "global", "forbidden"),
    (Fault(FaultKind.FORBIDDEN, reason="insufficientPermissions"), 403, "global",
     "insufficientPermissions"),
    (Fault(FaultKind.QUOTA), 403, "usageLimits", "rateLimitExceeded"),
    (Fault(FaultKind.QUOTA, reason="userRateLimitExceeded"), 403, "usageLimits",
     "userRateLimitExceeded"),
    (Fault(FaultKind.QUOTA, reason="quotaExceeded"), 403, "usageLimits", "quotaExceeded"),
    (Fault(FaultKind.TOO_MANY_REQUESTS), 429, "usageLimits", "rateLimitExceeded"),
    (Fault(FaultKind.SERVER_ERROR), 500, "global", "backendError"),
    (Fault(FaultKind.UNAVAILABLE), 503, "global", "backendError"),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "status", "domain", "reason"), GOOGLE_FAULTS)
async def test_google_faults_use_google_error_shapes(
    sb: Sandbox, http: aiohttp.ClientSession, fault: Fault, status: int, domain: str, reason: str
) -> None:
    sb.state.inject(Provider.GOOGLE, fault)
    got_status, body = await events(http, sb)
    assert got_status == status
    assert body["error"]["code"] == status
    assert body["error"]["errors"][0]["domain"] == domain
    assert body["error"]["errors"][0]["reason"] == reason
    # One-shot: the next request is served normally.
    assert (await events(http, sb))[0] == 200


async def test_retry_after_header_on_429(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=17))
    async with http.get(
        f"{sb.url}/calendar/v3/calendars/primary/events",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "17"


async def test_counted_persistent_and_targeted_faults(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.google.add_calendar("other")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource="other", times=2)
    statuses = [(await events(http, sb, calendar="other"))[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert (await events(http, sb))[0] == 200  # another calendar was never affected

    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SERVER_ERROR), times=None)
    statuses = [(await events(http, sb, calendar=c))[0] for c in ("primary", "other", "primary")]
    assert statuses == [500, 500, 500]
    sb.state.clear_faults(Provider.GOOGLE)
    assert (await events(http, sb))[0] == 200


async def test_slow_fault_holds_requests_until_the_gate_opens(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="g"), times=3)
    calls = [asyncio.create_task(events(http, sb)) for _ in range(3)]
    gate = sb.state.gates["g"]
    await asyncio.wait_for(gate.wait_for(3), SAFETY)
    assert not any(call.done() for call in calls)

    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*calls), SAFETY)
    assert [status for status, _ in results] == [200, 200, 200]
    assert gate.waiting == 0 and gate.arrived == 3


async def test_reset_fault_drops_the_connection(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    # aiohttp retries an idempotent request once when the connection drops: arm two resets.
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.RESET), times=2)
    with pytest.raises(aiohttp.ClientError):
        await events(http, sb)
    assert [(e.fault, e.status) for e in sb.state.log.entries()] == [(FaultKind.RESET, None)] * 2
    assert (await events(http, sb))[0] == 200


async def test_malformed_and_wrong_shape_faults(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.MALFORMED))
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.WRONG_SHAPE))
    url = f"{sb.url}/calendar/v3/calendars/primary/events"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        with pytest.raises(ValueError):
            await response.json()
    async with http.get(url, headers=headers) as response:
        assert response.status == 200
        assert not isinstance((await response.json())["items"], list)


def test_faults_reject_meaningless_combinations() -> None:
    with pytest.raises(ValueError):
        Fault(FaultKind.NOT_FOUND, reason="quotaExceeded")
    with pytest.raises(ValueError):
        Fault(FaultKind.SERVER_ERROR, gate="g")
    with pytest.raises(ValueError):
        SandboxState().inject(Provider.REST, Fault(FaultKind.RESET), times=0)


# --- OAuth -------------------------------------------------------------------------------

REDIRECT = "http://127.0.0.1:1/callback"


def pkce() -> tuple[str, str]:
    """A (verifier, S256 challenge) pair."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def authorize(
    http: aiohttp.ClientSession, sb: Sandbox, challenge: str, state: str = "xyz"
) -> URL:
    """Run the authorization endpoint and return the redirect target."""
    params = {
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "response_type": "code",
        "state": state,
        "scope": "calendar.readonly",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    async with http.get(f"{sb.url}/oauth2/auth", params=params, allow_redirects=False) as r:
        assert r.status == 302
        return URL(r.headers["Location"])


async def token_call(
    http: aiohttp.ClientSession, sb: Sandbox, headers: dict[str, str] | None = None, **form: str
) -> tuple[int, dict[str, Any]]:
    """POST the token endpoint (client credentials in the form unless ``headers`` has them)."""
    if headers is None:
        form = {"client_id": "app", "client_secret": "s3cret", **form}
    async with http.post(f"{sb.url}/oauth2/token", data=form, headers=headers) as response:
        return response.status, await response.json()


async def login(http: aiohttp.ClientSession, sb: Sandbox) -> dict[str, Any]:
    """A full code + PKCE exchange; returns the token response."""
    verifier, challenge = pkce()
    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http,
        sb,
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert status == 200, body
    return body


@pytest.fixture
def client(sb: Sandbox) -> None:
    sb.state.oauth.add_client("app", "s3cret", (REDIRECT,))


@pytest.mark.usefixtures("client")
async def test_code_exchange_with_pkce(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    verifier, challenge = pkce()
    location = await authorize(http, sb, challenge, state="st4te")
    assert str(location.with_query(None)) == REDIRECT
    assert location.query["state"] == "st4te"

    status, body = await token_call(
        http,
        sb,
        headers=basic("app", "s3cret"),
        grant_type="authorization_code",
        code=location.query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert status == 200
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == "calendar.readonly"
    assert body["refresh_token"]
    assert (await events(http, sb, token=body["access_token"]))[0] == 200

    # The code is single-use: replaying it fails and revokes what it produced.
    status, replay = await token_call(
        http,
        sb,
        grant_type="authorization_code",
        code=location.query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )
    assert (status, replay["error"]) == (400, "invalid_grant")
    assert (await events(http, sb, token=body["access_token"]))[0] == 401


@pytest.mark.usefixtures("client")
async def test_code_exchange_rejects_wrong_verifier_secret_and_redirect(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    verifier, challenge = pkce()
    other_verifier, _ = pkce()
    exchange = {"grant_type": "authorization_code", "redirect_uri": REDIRECT}

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, None, code=code, code_verifier=other_verifier, **exchange
    )
    assert (status, body["error"]) == (400, "invalid_grant")

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, headers=basic("app", "wrong"), code=code, code_verifier=verifier,
        **exchange,
    )  # fmt: skip
    assert (status, body["error"]) == (401, "invalid_client")

    code = (await authorize(http, sb, challenge)).query["code"]
    status, body = await token_call(
        http, sb, code=code, code_verifier=verifier,
        grant_type="authorization_code", redirect_uri="http://127.0.0.1:1/elsewhere",
    )  # fmt: skip
    assert (status, body["error"]) == (400, "invalid_grant")

    status, body = await token_call(http, sb, grant_type="password")
    assert (status, body["error"]) == (400, "unsupported_grant_type")


@pytest.mark.usefixtures("client")
async def test_authorization_endpoint_denial_and_untrusted_redirect(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.oauth.deny_consent = True
    location = await authorize(http, sb, pkce()[1], state="s1")
    assert location.query["error"] == "access_denied"
    assert location.query["state"] == "s1"
    assert "code" not in location.query

    params = {"client_id": "app", "redirect_uri": "http://evil.example/cb", "response_type": "code"}
    async with http.get(f"{sb.url}/oauth2/auth", params=params, allow_redirects=False) as r:
        assert r.status == 400
        assert "Location" not in r.headers


@pytest.mark.usefixtures("client")
async def test_refresh_rotates_and_reuse_revokes_the_family(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.oauth.expires_in = 60
    first = await login(http, sb)
    status, second = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert status == 200
    assert second["expires_in"] == 60
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await events(http, sb, token=second["access_token"]))[0] == 200

    # Replaying the retired refresh token: invalid_grant, and the whole family dies.
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    assert body["error_description"]
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=second["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")
    for access in (first["access_token"], second["access_token"]):
        assert (await events(http, sb, token=access))[0] == 401

    calls = sb.state.oauth.token_calls
    assert (calls["authorization_code"], calls["refresh_token"]) == (1, 3)
    assert sb.state.oauth.token_calls_total == 4


@pytest.mark.usefixtures("client")
async def test_expire_and_revoke_controls(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, sb)
    sb.state.oauth.expire_access_tokens()
    assert (await events(http, sb, token=tokens["access_token"]))[0] == 401
    status, fresh = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=tokens["refresh_token"]
    )
    assert status == 200

    sb.state.oauth.revoke_all()
    status, body = await token_call(
        http, sb, grant_type="refresh_token", refresh_token=fresh["refresh_token"]
    )
    assert (status, body["error"]) == (400, "invalid_grant")


@pytest.mark.usefixtures("client")
async def test_concurrent_refreshes_held_in_flight_then_exactly_one_wins(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    tokens = await login(http, sb)
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.SLOW, gate="idp"), resource="token", times=None)
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    calls = [asyncio.create_task(token_call(http, sb, **refresh)) for _ in range(200)]
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(200), SAFETY)
    assert sb.state.oauth.token_calls["refresh_token"] == 0

    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*calls), SAFETY)
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 199
    assert sb.state.oauth.token_calls["refresh_token"] == 200
    # The replays revoked the family, so even the winner's tokens are dead.
    (winner,) = [body for status, body in results if status == 200]
    assert (await events(http, sb, token=winner["access_token"]))[0] == 401


async def test_oauth_faults_use_oauth_error_bodies(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.UNAVAILABLE, retry_after=3), resource="token")
    async with http.post(f"{sb.url}/oauth2/token", data={"grant_type": "refresh_token"}) as r:
        assert r.status == 503
        assert r.headers["Retry-After"] == "3"
        assert (await r.json())["error"] == "temporarily_unavailable"


# --- ICS ---------------------------------------------------------------------------------


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


# --- REST --------------------------------------------------------------------------------

RECORDS = [{"uuid": f"r{n}", "n": n} for n in range(5)]


async def follow(
    http: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Fetch every page of a body-link or link-header dataset; the records and page count."""
    records: list[dict[str, Any]] = []
    pages = 0
    next_url: str | None = url
    while next_url:
        async with http.get(next_url, headers=headers) as response:
            assert response.status == 200
            body = await response.json()
            pages += 1
            if isinstance(body, list):
                records += body
                link = response.links.get("next")
                next_url = str(link["url"]) if link else None
            else:
                records += body["data"]
                next_url = body["links"]["next"]
                assert next_url is None or next_url.startswith(sb_prefix(url))
    return records, pages


def sb_prefix(url: str) -> str:
    return str(URL(url).origin())


@pytest.mark.parametrize("style", [Pagination.BODY_LINK, Pagination.LINK_HEADER])
async def test_rest_link_pagination(
    sb: Sandbox, http: aiohttp.ClientSession, style: Pagination
) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid", pagination=style, page_size=2)
    records, pages = await follow(http, f"{sb.url}/api/things")
    assert (records, pages) == (RECORDS, 3)
    records, pages = await follow(http, f"{sb.url}/api/things?per_page=4")
    assert (records, pages) == (RECORDS, 2)


async def test_rest_cursor_pagination(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.datasets.set_dataset(
        "things", RECORDS, id_field="uuid", pagination=Pagination.CURSOR, page_size=2
    )
    url = f"{sb.url}/api/things"
    records: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        async with http.get(url, params=params) as response:
            body = await response.json()
        records += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert (records, pages) == (RECORDS, 3)
    async with http.get(url, params={"cursor": "not-a-cursor"}) as response:
        assert response.status == 400


@pytest.mark.parametrize(
    ("auth", "good", "bad"),
    [
        (
            DatasetAuth(AuthKind.BEARER, secret="tok"),
            {"Authorization": "Bearer tok"},
            {"Authorization": "Bearer nope"},
        ),
        (
            DatasetAuth(AuthKind.API_KEY, secret="k", header="X-Token"),
            {"X-Token": "k"},
            {"X-API-Key": "k"},
        ),
        (
            DatasetAuth(AuthKind.BASIC, basic=BasicAuth("u", "p")),
            basic("u", "p"),
            basic("u", "x"),
        ),
    ],
)
async def test_rest_auth(
    sb: Sandbox,
    http: aiohttp.ClientSession,
    auth: DatasetAuth,
    good: dict[str, str],
    bad: dict[str, str],
) -> None:
    sb.state.datasets.set_dataset("secret", RECORDS, id_field="uuid", auth=auth)
    for headers in ({}, bad):
        async with http.get(f"{sb.url}/api/secret", headers=headers) as response:
            assert response.status == 401
            assert (await response.json())["error"]["status"] == 401
    records, _ = await follow(http, f"{sb.url}/api/secret", headers=good)
    assert records == RECORDS


async def test_rest_faults_and_missing_dataset(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sb.state.inject(Provider.REST, Fault(FaultKind.QUOTA))
    async with http.get(f"{sb.url}/api/things") as response:
        assert response.status == 403
    async with http.get(f"{sb.url}/api/missing") as response:
        assert response.status == 404


# --- Control API and request log ---------------------------------------------------------


async def test_control_api_drives_a_sandbox_over_http(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    control = f"{sb.url}/_control"

    async def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with http.request(method, control + path, json=body) as response:
            return response.status, await response.json()

    assert await call("GET", "/health") == (200, {"ok": True})
    assert (await call("PUT", "/google/calendars/team", {"summary": "Team"}))[0] == 200
    event = {"summary": "Kick-off", "start": {"dateTime": "2030-01-07T09:00:00+01:00"},
             "end": "2030-01-07T10:00:00+01:00"}  # fmt: skip
    assert (await call("PUT", "/google/calendars/team/events/k1", event))[0] == 200
    status, body = await events(http, sb, calendar="team")
    assert [(i["id"], i["start"]["dateTime"]) for i in body["items"]] == [
        ("k1", "2030-01-07T09:00:00+01:00")
    ]
    assert (await call("DELETE", "/google/calendars/team/events/k1"))[0] == 200
    _, delta = await events(http, sb, calendar="team", syncToken=body["nextSyncToken"])
    assert [i["status"] for i in delta["items"]] == ["cancelled"]
    assert (await call("POST", "/google/calendars/team/invalidate", {"drop": ["k1"]}))[0] == 200
    status, _ = await events(http, sb, calendar="team", syncToken=delta["nextSyncToken"])
    assert status == 410

    fault = {"provider": "google", "resource": "team", "kind": "quota",
             "reason": "userRateLimitExceeded", "times": 1}  # fmt: skip
    assert (await call("POST", "/faults", fault))[0] == 200
    assert (await call("GET", "/faults"))[1]["faults"][0]["reason"] == "userRateLimitExceeded"
    status, body = await events(http, sb, calendar="team")
    assert (status, body["error"]["errors"][0]["reason"]) == (403, "userRateLimitExceeded")

    status, log = await call("GET", "/requests?provider=google&resource=team")
    assert [(r["status"], r["fault"]) for r in log["requests"]][-1] == (403, "quota")

    assert (await call("POST", "/oauth/access-tokens", {"token": "t2", "expires_in": 0}))[0] == 200
    assert (await events(http, sb, calendar="team", token="t2"))[0] == 401

    feed = {"events": [{"uid": "u1", "summary": "S", "start": "2030-01-01", "end": "2030-01-02"}],
            "auth": {"username": "a", "password": "b"}}  # fmt: skip
    assert (await call("PUT", "/ics/f", feed))[0] == 200
    async with http.get(f"{sb.url}/ics/f.ics", headers=basic("a", "b")) as response:
        assert b"UID:u1" in await response.read()

    dataset = {"records": [{"id": 1}, {"id": 2}, {"id": 3}], "pagination": "cursor",
               "page_size": 2, "auth": {"kind": "api_key", "secret": "k"}}  # fmt: skip
    assert (await call("PUT", "/rest/d", dataset))[0] == 200
    async with http.get(f"{sb.url}/api/d", headers={"X-API-Key": "k"}) as response:
        assert (await response.json())["items"] == [{"id": 1}, {"id": 2}]

    assert (await call("GET", "/oauth/stats"))[1] == {
        "token_calls": {"total": 0, "by_grant_type": {}}
    }
    assert (await call("DELETE", "/requests"))[0] == 200
    assert (await call("GET", "/requests"))[1] == {"total": 0, "requests": []}
    assert (await call("POST", "/reset"))[0] == 200
    assert (await call("GET", "/state"))[1]["calendars"] == []


async def test_control_api_rejects_bad_requests(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    control = f"{sb.url}/_control"
    bad = [
        ("POST", "/faults", {"provider": "google", "kind": "explode"}, 400),
        ("POST", "/faults", {"provider": "google", "kind": "slow", "times": 0}, 400),
        ("PUT", "/google/calendars/primary/events/x", {"start": "2030-01-01T10:00:00"}, 400),
        ("PUT", "/google/calendars/missing/events/x",
         {"start": "2030-01-01", "end": "2030-01-02"}, 404),
        ("DELETE", "/ics/missing", None, 404),
        ("PUT", "/rest/d", {"records": [{"no_id": 1}]}, 400),
    ]  # fmt: skip
    for method, path, body, status in bad:
        async with http.request(method, control + path, json=body) as response:
            assert response.status == status, (path, await response.text())
            assert "error" in await response.json()


async def test_gates_over_http(sb: Sandbox, http: aiohttp.ClientSession) -> None:
    fault = {"provider": "google", "kind": "slow", "gate": "h", "times": None}
    async with http.post(f"{sb.url}/_control/faults", json=fault) as response:
        assert response.status == 200
    held = asyncio.create_task(events(http, sb))
    await asyncio.wait_for(sb.state.gates["h"].wait_for(1), SAFETY)
    async with http.get(f"{sb.url}/_control/gates") as response:
        assert (await response.json())["gates"] == [
            {"name": "h", "open": False, "waiting": 1, "arrived": 1}
        ]
    async with http.post(f"{sb.url}/_control/gates/h/open") as response:
        assert response.status == 200
    assert (await asyncio.wait_for(held, SAFETY))[0] == 200


async def test_request_log_records_purpose_status_and_fault(
    sb: Sandbox, http: aiohttp.ClientSession
) -> None:
    sb.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sb.state.inject(Provider.REST, Fault(FaultKind.SERVER_ERROR))
    for purpose in ("probe", None):
        headers = {"X-Sandbox-Purpose": purpose} if purpose else {}
        async with http.get(f"{sb.url}/api/things?page=1", headers=headers):
            pass
    async with http.get(f"{sb.url}/_control/health"):
        pass  # control traffic is not logged

    first, second = sb.state.log.entries()
    assert (first.provider, first.resource, first.method, first.path, first.query) == (
        Provider.REST,
        "things",
        "GET",
        "/api/things",
        "page=1",
    )
    assert (first.purpose, first.status, first.fault) == ("probe", 500, FaultKind.SERVER_ERROR)
    assert (second.purpose, second.status, second.fault) == (None, 200, None)
    assert [e.path for e in sb.state.log.entries(purpose="probe")] == ["/api/things"]


# --- Lifecycle ---------------------------------------------------------------------------


async def test_stop_releases_parked_requests(http: aiohttp.ClientSession) -> None:
    sandbox = Sandbox()
    await sandbox.start()
    sandbox.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sandbox.state.inject(Provider.REST, Fault(FaultKind.SLOW))
    url = f"{sandbox.url}/api/things"
    held = asyncio.create_task(http.get(url))
    await asyncio.wait_for(sandbox.state.gates["default"].wait_for(1), SAFETY)
    await asyncio.wait_for(sandbox.stop(), SAFETY)
    response = await asyncio.wait_for(held, SAFETY)
    assert response.status == 200
    response.release()
    with pytest.raises(RuntimeError):
        _ = sandbox.url


async def test_command_line_serves_demo_data_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), SAFETY)).decode()
        base = banner.split()[-1]
        assert base.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer sandbox-token"}
        url = f"{base}/calendar/v3/calendars/primary/events"
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            assert len((await response.json())["items"]) == 4
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), SAFETY) == 0
