"""Google Calendar (API v3): the events of one calendar, synced incrementally.

The first sync lists every event (`events.list`, page by page); its last page carries a
`nextSyncToken`, and later syncs list only what changed since (cancelled events are deletions).
When Google no longer knows a sync or page token it answers HTTP 410: we start a full listing
again, and its end removes the events Google no longer has.

Google can also push: `events.watch` opens a channel that POSTs a bodiless notification to our
address whenever the calendar changes, until it expires or `channels.stop` ends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from yarl import URL

from service.connectors.auth import OAuthProvider, bearer
from service.connectors.base import (
    ConfigField,
    Cursor,
    FieldKind,
    Page,
    PageKind,
    PushConnector,
    PushRefused,
    Source,
    Watching,
    WatchRequest,
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


class GoogleCalendarConnector(PushConnector):
    """Syncs `events.list` of one calendar with sync tokens; watches it with `events.watch`."""

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

    async def account(self, source: Source) -> str | None:
        """The signed-in Google account: its primary calendar's id is its address
        (calendars.get("primary"), which the calendar scope already allows)."""
        try:
            response = await self._get(
                source, _calendar_url({**source.config, "calendar_id": "primary"})
            )
            body = json_body(response, WHAT)
        except (ProviderFailure, _SyncTokenGone):
            return None
        found = body.get("id") if isinstance(body, dict) else None
        return found if isinstance(found, str) and found else None

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
        # Decoding a page of up to 2500 events is CPU work: off the event loop when big.
        return await source.parse(len(response.body), _events_page, response, position)

    async def watch(self, source: Source, request: WatchRequest) -> Watching:
        """`events.watch`: a web_hook channel on the calendar's events."""
        body = {
            "id": request.channel_id,
            "type": "web_hook",
            "address": request.address,
            "token": request.token,
            "expiration": str(int(request.expires_at.timestamp() * 1000)),
        }
        url = _calendar_url(source.config).joinpath("events", "watch")
        response = await self._call(source, url, body, refusals=True)
        answer = json_body(response, WHAT)
        resource_id = answer.get("resourceId") if isinstance(answer, dict) else None
        expiration = _expiration(answer.get("expiration") if isinstance(answer, dict) else None)
        if not isinstance(resource_id, str) or not resource_id or expiration is None:
            raise malformed(
                f"{WHAT} answered events.watch without a resource id and expiration",
                url=redact(response.url),
            )
        return Watching(resource_id, expiration)

    async def stop_channel(self, source: Source, channel_id: str, resource_id: str) -> bool:
        """`channels.stop`; False when Google does not know the channel (HTTP 404)."""
        base = URL(str(source.config.get("api_base_url") or DEFAULT_API_BASE_URL))
        url = base.joinpath("channels", "stop")
        try:
            await self._call(source, url, {"id": channel_id, "resourceId": resource_id})
        except ProviderFailure as failure:
            if failure.code is ErrorCode.RESOURCE_NOT_FOUND:
                return False
            raise
        return True

    async def _get(self, source: Source, url: URL) -> Response:
        """GET with the access token; a rejected token is renewed once if it can be."""
        return await self._call(source, url)

    async def _call(
        self,
        source: Source,
        url: URL,
        body: Mapping[str, Any] | None = None,
        *,
        refusals: bool = False,
    ) -> Response:
        """GET (or POST `body`) with the access token; a rejected token is renewed once if it
        can be. With `refusals`, Google's "will not push here" answers are PushRefused."""

        async def send(token: str | None) -> Response:
            credentials = bearer(token) if token else None
            if body is None:
                return await source.http.get(url, what=WHAT, credentials=credentials)
            return await source.http.post_json(url, body, what=WHAT, credentials=credentials)

        token = await source.tokens.current()
        response = await send(token)
        if response.status == 401 and token:
            renewed = await source.tokens.renew(token)
            if renewed:
                response = await send(renewed)
        if response.status in (200, 204):
            return response
        if refusals:
            refused = _push_refusal(response)
            if refused is not None:
                raise refused
        raise _failure(response, str(source.config.get("calendar_id", "")))


def _calendar_url(config: Mapping[str, Any]) -> URL:
    base = URL(str(config.get("api_base_url") or DEFAULT_API_BASE_URL))
    calendar_id = quote(str(config.get("calendar_id", "")), safe="@")
    return base.joinpath("calendars", calendar_id, encoded=True)


def _entry(item: Any) -> tuple[str, Mapping[str, Any] | None] | None:
    """(event id, event) — or (event id, None) for a cancelled, i.e. deleted, event; None for
    an item that is not an event with an id."""
    if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
        return None
    return item["id"], None if item.get("status") == "cancelled" else item


#: Google's reasons for not opening a channel that retrying soon cannot change.
_PUSH_REFUSALS = {
    "push.webhookUrlNotHttps": "the notification address is not HTTPS",
    "push.webhookUrlUnauthorized": "the notification address is not allowed for this project",
    "push.webhookUrlNotAccepted": "the notification address was not accepted",
    "pushNotSupportedForRequestedResource": "this calendar does not support push notifications",
}


def _push_refusal(response: Response) -> PushRefused | None:
    reason, message = _google_error(response)
    if response.status not in (400, 403) or reason not in _PUSH_REFUSALS:
        return None
    detail = f" ({message})" if message else ""
    return PushRefused(f"{WHAT} refused the channel: {_PUSH_REFUSALS[reason]}{detail}")


def _expiration(value: Any) -> datetime | None:
    """A channel's expiration: milliseconds since the epoch, as a number or a string."""
    try:
        millis = int(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


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
    entries: list[tuple[str, Mapping[str, Any] | None]] = []
    skipped: list[str] = []
    for index, item in enumerate(body.get("items", [])):
        entry = _entry(item)
        if entry is None:
            # One event Google lists without an id must not keep the others from being stored.
            skipped.append(f"event #{index} of the page has no id")
        else:
            entries.append(entry)
    next_page, next_sync = body.get("nextPageToken"), body.get("nextSyncToken")
    if isinstance(next_page, str) and next_page:
        after = _Position(full=position.full, page_token=next_page)
        return Page.of(position.kind, entries, after.cursor(), last=False, skipped=skipped)
    if isinstance(next_sync, str) and next_sync:
        after = _Position(full=False, sync_token=next_sync)
        return Page.of(position.kind, entries, after.cursor(), last=True, skipped=skipped)
    raise malformed(
        f"{WHAT} answered events.list with neither a next page nor a sync token",
        url=redact(response.url),
        excerpt=response.excerpt(),
    )
