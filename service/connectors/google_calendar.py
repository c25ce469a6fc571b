"""Google Calendar (API v3): the events of one calendar, synced incrementally.

The first sync lists every event (`events.list`, page by page); its last page carries a
`nextSyncToken`, and later syncs list only what changed since (cancelled events are deletions).
When Google no longer knows a sync or page token it answers HTTP 410: we start a full listing
again, and its end removes the events Google no longer has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from yarl import URL

from service.connectors.auth import OAuthProvider, bearer
from service.connectors.base import (
    ConfigField,
    Connector,
    Cursor,
    FieldKind,
    Page,
    PageKind,
    Source,
)
from service.connectors.http import Response, json_body, redact, retry_after
from service.connectors.provider_failures import ProviderFailure, from_status, malformed
from service.domain.taxonomy import ErrorCode

HTTP = ("http", "https")
DEFAULT_API_BASE_URL = "https://www.googleapis.com/calendar/v3"
WHAT = "Google Calendar"
MAX_RESULTS = 2500  # events.list's own limit

#: Google's OAuth2 endpoints. offline + consent: Google hands out a refresh token only on a
#: consented offline grant.
GOOGLE_OAUTH = OAuthProvider(
    name="google",
    authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
    token_url="https://oauth2.googleapis.com/token",
    default_scopes=("https://www.googleapis.com/auth/calendar.readonly",),
    revocation_url="https://oauth2.googleapis.com/revoke",
    authorization_params=(
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("include_granted_scopes", "true"),
    ),
)

#: 403 reasons that mean "slow down", not "you may not" (Google's usageLimits domain).
RATE_LIMIT_REASONS = frozenset(
    {"rateLimitExceeded", "userRateLimitExceeded", "quotaExceeded", "dailyLimitExceeded"}
)


class _SyncTokenGone(Exception):
    """HTTP 410: Google forgot the sync (or page) token; only a full listing can continue."""


@dataclass(frozen=True)
class _Position:
    """Where a listing stands: a full listing or a listing of changes, and its tokens."""

    full: bool = True
    page_token: str | None = None
    sync_token: str | None = None

    @classmethod
    def of(cls, cursor: Cursor | None) -> _Position:
        if not cursor:
            return cls()
        return cls(
            full=cursor.get("mode") != "changes",
            page_token=cursor.get("page_token"),
            sync_token=cursor.get("sync_token"),
        )

    def cursor(self) -> dict[str, Any]:
        return {
            "mode": "full" if self.full else "changes",
            "page_token": self.page_token,
            "sync_token": self.sync_token,
        }

    @property
    def kind(self) -> PageKind:
        if not self.full:
            return PageKind.CHANGES
        return PageKind.FULL_NEXT if self.page_token else PageKind.FULL_START


class GoogleCalendarConnector(Connector):
    """Syncs `events.list` of one calendar with sync tokens."""

    type = "google_calendar"
    description = "The events of one Google Calendar."
    fields = (
        ConfigField("calendar_id", "The calendar id, e.g. 'primary'.", required=True),
        ConfigField(
            "api_base_url", "Override of the API base URL.", kind=FieldKind.URL, allowed=HTTP
        ),
        ConfigField(
            "token_url", "Override of the OAuth2 token endpoint.", kind=FieldKind.URL, allowed=HTTP
        ),
        ConfigField(
            "authorization_url",
            "Override of the OAuth2 consent page.",
            kind=FieldKind.URL,
            allowed=HTTP,
        ),
    )
    credential_kinds = frozenset({"oauth", "bearer_token"})
    oauth = GOOGLE_OAUTH

    async def test_connection(self, source: Source) -> None:
        """`calendars.get`: cheap, and it needs the same access as listing the events."""
        try:
            response = await self._get(source, _calendar_url(source.config))
        except _SyncTokenGone:
            raise ProviderFailure(
                ErrorCode.RESOURCE_NOT_FOUND, f"{WHAT} answered HTTP 410: the calendar is gone"
            ) from None
        body = json_body(response, WHAT)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise malformed(
                f"{WHAT} answered calendars.get with an unexpected document",
                url=redact(response.url),
                excerpt=response.excerpt(),
            )

    async def fetch(self, source: Source, cursor: Cursor | None) -> Page:
        position = _Position.of(cursor)
        try:
            return await self._page(source, position)
        except _SyncTokenGone:
            if position == _Position():
                raise malformed(f"{WHAT} answered HTTP 410 to a full listing") from None
        # Google forgot our token: list everything again; the end of that listing removes
        # the events Google no longer has.
        try:
            return await self._page(source, _Position())
        except _SyncTokenGone:
            raise malformed(f"{WHAT} answered HTTP 410 to a full listing") from None

    async def _page(self, source: Source, position: _Position) -> Page:
        params = {"maxResults": str(max(1, min(source.page_size, MAX_RESULTS)))}
        if position.page_token:
            params["pageToken"] = position.page_token
        elif position.sync_token and not position.full:
            params["syncToken"] = position.sync_token
        url = _calendar_url(source.config).joinpath("events").with_query(params)
        response = await self._get(source, url)
        # Decoding a page of up to 2500 events is CPU work: off the event loop.
        return await asyncio.to_thread(_events_page, response, position)

    async def _get(self, source: Source, url: URL) -> Response:
        """GET with the access token; a rejected token is renewed once if it can be."""
        token = await source.tokens.current()
        credentials = bearer(token) if token else None
        response = await source.http.get(url, what=WHAT, credentials=credentials)
        if response.status == 401 and token:
            renewed = await source.tokens.renew(token)
            if renewed:
                response = await source.http.get(url, what=WHAT, credentials=bearer(renewed))
        if response.status != 200:
            raise _failure(response, str(source.config.get("calendar_id", "")))
        return response


def _calendar_url(config: Mapping[str, Any]) -> URL:
    base = URL(str(config.get("api_base_url") or DEFAULT_API_BASE_URL))
    calendar_id = quote(str(config.get("calendar_id", "")), safe="@")
    return base.joinpath("calendars", calendar_id, encoded=True)


def _entry(item: Any, response: Response) -> tuple[str, Mapping[str, Any] | None]:
    """(event id, event) — or (event id, None) for a cancelled, i.e. deleted, event."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        raise malformed(
            f"{WHAT} listed an event without an id",
            url=redact(response.url),
            excerpt=response.excerpt(),
        )
    return item["id"], None if item.get("status") == "cancelled" else item


def _failure(response: Response, calendar_id: str) -> Exception:
    """What Google's error answer means (its JSON error names a reason, e.g. quotaExceeded)."""
    status = response.status
    reason, message = _google_error(response)
    context = {"status": status, "reason": reason, "url": redact(response.url)}
    if status == 410:
        return _SyncTokenGone()
    if status == 401:
        return ProviderFailure(
            ErrorCode.TOKEN_EXPIRED,
            f"{WHAT} did not accept the access token (HTTP 401): it has expired or was revoked",
            context=context,
        )
    if status == 404:
        return ProviderFailure(
            ErrorCode.RESOURCE_NOT_FOUND,
            f"{WHAT} has no calendar {calendar_id!r} that this account can see (HTTP 404)",
            context=context,
        )
    if status == 429 or (status == 403 and reason in RATE_LIMIT_REASONS):
        return ProviderFailure(
            ErrorCode.RATE_LIMITED,
            f"{WHAT} is limiting requests (HTTP {status}, {reason or 'rate limited'})",
            retry_after=retry_after(response),
            context=context,
        )
    if status == 403:
        detail = f"{reason}: {message}" if reason and message else (reason or "forbidden")
        return ProviderFailure(
            ErrorCode.ACCESS_DENIED,
            f"{WHAT} denied access to calendar {calendar_id!r} (HTTP 403, {detail})",
            context=context,
        )
    if 200 <= status < 400:
        return malformed(f"{WHAT} answered HTTP {status} where 200 was expected", **context)
    return from_status(status, what=WHAT, retry_after=retry_after(response), context=context)


def _google_error(response: Response) -> tuple[str, str]:
    """(reason, message) of a Google JSON error body; empty strings when it has none."""
    try:
        body = json_body(response, WHAT)
    except ProviderFailure:
        return "", ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    errors = error.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else {}
    reason = first.get("reason") if isinstance(first, dict) else None
    message = error.get("message")
    return (
        response.quote(reason) if isinstance(reason, str) else "",
        response.quote(message) if isinstance(message, str) else "",
    )


def _events_page(response: Response, position: _Position) -> Page:
    """An events.list answer as a page (runs in a worker thread)."""
    body = json_body(response, WHAT)
    if not isinstance(body, dict) or not isinstance(body.get("items", []), list):
        raise malformed(
            f"{WHAT} answered events.list without a list of events",
            url=redact(response.url),
            excerpt=response.excerpt(),
        )
    entries = [_entry(item, response) for item in body.get("items", [])]
    next_page, next_sync = body.get("nextPageToken"), body.get("nextSyncToken")
    if isinstance(next_page, str) and next_page:
        after = _Position(full=position.full, page_token=next_page)
        return Page.of(position.kind, entries, after.cursor(), last=False)
    if isinstance(next_sync, str) and next_sync:
        after = _Position(full=False, sync_token=next_sync)
        return Page.of(position.kind, entries, after.cursor(), last=True)
    raise malformed(
        f"{WHAT} answered events.list with neither a next page nor a sync token",
        url=redact(response.url),
        excerpt=response.excerpt(),
    )
