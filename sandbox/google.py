"""The Google Calendar API v3 provider: ``calendars.get``, ``events.list`` with sync tokens,
and push: ``events.watch`` and ``channels.stop`` (the channels themselves: ``sandbox.push``).

Errors use Google's JSON error shape (``{"error": {"code", "message", "errors": [...]}}``)
so that connectors classify them exactly as they would classify Google's.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from sandbox.calendars import (
    Calendar,
    CalendarEvent,
    CalendarNotFound,
    EventTime,
    InvalidToken,
    SyncTokenExpired,
)
from sandbox.credentials import bearer_token
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.push import WatchRefused
from sandbox.traffic import STATE, endpoint, path_param

PREFIX = "/calendar/v3"
MAX_RESULTS = 2500

_AUTH_MESSAGE = (
    "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
    "cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_GONE_MESSAGE = "Sync token is no longer valid, a full sync is required."

# reason -> (domain, message, top-level status or None)
_REASONS: dict[str, tuple[str, str, str | None]] = {
    "notFound": ("global", "Not Found", None),
    "forbidden": ("global", "Forbidden", None),
    "insufficientPermissions": (
        "global",
        "Request had insufficient authentication scopes.",
        "PERMISSION_DENIED",
    ),
    "rateLimitExceeded": ("usageLimits", "Rate Limit Exceeded", None),
    "userRateLimitExceeded": ("usageLimits", "User Rate Limit Exceeded", None),
    "quotaExceeded": ("usageLimits", "Calendar usage limits exceeded.", None),
    "backendError": ("global", "Backend Error", None),
}


def error(
    code: int,
    reason: str,
    message: str,
    *,
    domain: str = "global",
    status: str | None = None,
    **detail: str,
) -> web.Response:
    """A Google API error response: ``{"error": {"code", "message", "errors", "status"?}}``."""
    body: dict[str, Any] = {
        "code": code,
        "message": message,
        "errors": [{"domain": domain, "reason": reason, "message": message, **detail}],
    }
    if status is not None:
        body["status"] = status
    return web.json_response({"error": body}, status=code)


def unauthenticated() -> web.Response:
    """Google's 401 for a missing, unknown, expired or revoked access token."""
    return web.json_response(
        {
            "error": {
                "code": 401,
                "message": _AUTH_MESSAGE,
                "errors": [
                    {
                        "message": "Invalid Credentials",
                        "domain": "global",
                        "reason": "authError",
                        "location": "Authorization",
                        "locationType": "header",
                    }
                ],
                "status": "UNAUTHENTICATED",
            }
        },
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


def not_found() -> web.Response:
    """Google's 404 ``notFound``."""
    return _known(404, "notFound")


def render_fault(fault: Fault) -> web.Response:
    """The response Google would give for ``fault``."""
    match fault.kind:
        case FaultKind.UNAUTHORIZED:
            return unauthenticated()
        case FaultKind.NOT_FOUND:
            return not_found()
        case FaultKind.FORBIDDEN | FaultKind.QUOTA:
            return _known(403, fault.google_reason or "forbidden")
        case FaultKind.TOO_MANY_REQUESTS:
            return _known(429, "rateLimitExceeded")
        case FaultKind.SERVER_ERROR:
            return _known(500, "backendError")
        case FaultKind.UNAVAILABLE:
            message = "The service is currently unavailable."
            return error(503, "backendError", message, status="UNAVAILABLE")
        case FaultKind.MALFORMED:
            body = fault.body or '{"kind": "calendar#events", "items": [{"id": "trunc'
            return web.Response(text=body, content_type="application/json")
        case _:
            body = fault.body or '{"kind": "calendar#events", "items": {"not": "a list"}}'
            return web.Response(text=body, content_type="application/json")


def _known(code: int, reason: str) -> web.Response:
    domain, message, status = _REASONS[reason]
    return error(code, reason, message, domain=domain, status=status)


def _invalid(location: str) -> web.Response:
    return error(400, "invalid", "Invalid Value", location=location, locationType="parameter")


def _authorized(request: web.Request) -> bool:
    token = bearer_token(request.headers)
    return token is not None and request.app[STATE].oauth.access_token(token) is not None


_google = endpoint(Provider.GOOGLE, path_param("calendarId"), render_fault)


@_google
async def get_calendar(request: web.Request) -> web.StreamResponse:
    """``GET /calendar/v3/calendars/{calendarId}`` — a cheap call for connection tests. As at
    Google, ``primary`` is the signed-in account's own calendar, whose id is the account's
    address (the sandbox's ``primary`` calendar, answered under the token's account)."""
    if not _authorized(request):
        return unauthenticated()
    calendar_id = request.match_info["calendarId"]
    state = request.app[STATE]
    try:
        calendar = state.google.calendar(calendar_id)
    except CalendarNotFound:
        if calendar_id != "primary":
            return not_found()
        calendar = None
    token = state.oauth.access_token(bearer_token(request.headers) or "")
    account = token.account if token is not None else ""
    return web.json_response(
        {
            "kind": "calendar#calendar",
            "etag": f'"{calendar.seq if calendar else 0}"',
            "id": account if calendar_id == "primary" else calendar_id,
            "summary": calendar.summary if calendar else account,
            "timeZone": calendar.time_zone if calendar else "UTC",
        }
    )


@_google
async def list_events(request: web.Request) -> web.StreamResponse:
    """``GET /calendar/v3/calendars/{calendarId}/events`` (events.list).

    Supports ``maxResults``, ``pageToken``, ``syncToken`` and ``showDeleted``;
    ``singleEvents`` is validated and ignored, as the sandbox holds no recurring events.
    """
    if not _authorized(request):
        return unauthenticated()
    query = request.query
    try:
        max_results = int(query.get("maxResults", "250"))
    except ValueError:
        return _invalid("maxResults")
    if max_results < 1:
        return _invalid("maxResults")
    max_results = min(max_results, MAX_RESULTS)  # Google caps the page size silently
    flags = {name: query.get(name, "false").lower() for name in ("showDeleted", "singleEvents")}
    for name, value in flags.items():
        if value not in ("true", "false"):
            return _invalid(name)
    try:
        page = request.app[STATE].google.list_events(
            request.match_info["calendarId"],
            max_results=max_results,
            page_token=query.get("pageToken"),
            sync_token=query.get("syncToken"),
            show_deleted=flags["showDeleted"] == "true",
        )
    except CalendarNotFound:
        return not_found()
    except SyncTokenExpired:
        return error(410, "fullSyncRequired", _GONE_MESSAGE)
    except InvalidToken as exc:
        return _invalid(exc.parameter)
    body: dict[str, Any] = {
        "kind": "calendar#events",
        "etag": f'"{page.calendar.seq}"',
        "summary": page.calendar.summary,
        "updated": _timestamp(page.calendar.updated),
        "timeZone": page.calendar.time_zone,
        "accessRole": "owner",
        "defaultReminders": [],
        "items": [event_json(page.calendar, event) for event in page.items],
    }
    if page.next_page_token is not None:
        body["nextPageToken"] = page.next_page_token
    if page.next_sync_token is not None:
        body["nextSyncToken"] = page.next_sync_token
    return web.json_response(body)


@_google
async def watch_events(request: web.Request) -> web.StreamResponse:
    """``POST /calendar/v3/calendars/{calendarId}/events/watch`` (events.watch).

    Body: ``{"id", "type": "web_hook", "address", "token"?, "expiration"?}`` (expiration in
    milliseconds since the epoch). Answers the channel with its ``resourceId`` and
    ``expiration``; the ``sync`` notification follows.
    """
    if not _authorized(request):
        return unauthenticated()
    calendar_id = request.match_info["calendarId"]
    try:
        request.app[STATE].google.calendar(calendar_id)
    except CalendarNotFound:
        return not_found()
    body = await _json(request)
    if body is None:
        return error(400, "parseError", "Parse Error")
    channel_id, address, token = body.get("id"), body.get("address"), body.get("token")
    if not isinstance(channel_id, str) or not 0 < len(channel_id) <= 64:
        return error(400, "required", "Required channel id", location="id")
    if body.get("type") not in ("web_hook", "webhook"):
        return error(400, "invalid", "Invalid channel type", location="type")
    if not isinstance(address, str) or not address:
        return error(400, "required", "Required address", location="address")
    if token is not None and (not isinstance(token, str) or len(token) > 256):
        return error(400, "invalid", "Invalid token", location="token")
    expiration = _millis(body.get("expiration"))
    if body.get("expiration") is not None and expiration is None:
        return error(400, "invalid", "Invalid expiration", location="expiration")
    uri = str(request.url.with_path(PREFIX + f"/calendars/{calendar_id}/events").with_query(None))
    try:
        channel = request.app[STATE].push.watch(
            calendar_id, channel_id, address, token, expiration, uri, _account(request)
        )
    except WatchRefused as refused:
        return error(400, refused.reason, refused.message)
    answer: dict[str, Any] = {
        "kind": "api#channel",
        "id": channel.id,
        "resourceId": channel.resource_id,
        "resourceUri": channel.resource_uri,
        "expiration": str(int(channel.expiration.timestamp() * 1000)),
    }
    if channel.token is not None:
        answer["token"] = channel.token
    return web.json_response(answer)


@_google
async def stop_channel(request: web.Request) -> web.StreamResponse:
    """``POST /calendar/v3/channels/stop``: ``{"id", "resourceId"}``; 204, or 404 when no
    live channel has them."""
    if not _authorized(request):
        return unauthenticated()
    body = await _json(request)
    if body is None:
        return error(400, "parseError", "Parse Error")
    channel_id, resource_id = body.get("id"), body.get("resourceId")
    if not isinstance(channel_id, str) or not isinstance(resource_id, str):
        return error(400, "required", "Required id and resourceId")
    if not request.app[STATE].push.stop(channel_id, resource_id, _account(request)):
        return error(404, "notFound", f"Channel '{channel_id}' not found for project 'sandbox'")
    return web.Response(status=204)


def _account(request: web.Request) -> str:
    """The account the request's (authorized) access token acts for."""
    token = request.app[STATE].oauth.access_token(bearer_token(request.headers) or "")
    return token.account if token is not None else ""


async def _json(request: web.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.read() or b"null")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _millis(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def event_json(calendar: Calendar, event: CalendarEvent) -> dict[str, Any]:
    """An event resource as Google returns it (deleted events carry little besides their id)."""
    common = {
        "kind": "calendar#event",
        "etag": event.etag,
        "id": event.id,
        "status": event.status,
        "updated": _timestamp(event.updated),
    }
    if event.cancelled:
        return common
    eid = base64.urlsafe_b64encode(f"{event.id} {calendar.id}".encode()).decode().rstrip("=")
    body: dict[str, Any] = {
        **common,
        "htmlLink": f"https://www.google.com/calendar/event?eid={eid}",
        "created": _timestamp(event.created),
        "summary": event.summary,
        "start": _boundary(event.start),
        "end": _boundary(event.end),
        "iCalUID": f"{event.id}@google.com",
        "sequence": event.sequence,
        "eventType": "default",
    }
    if event.description:
        body["description"] = event.description
    return body


def routes() -> list[web.RouteDef]:
    """The provider's routes."""
    return [
        web.get(PREFIX + "/calendars/{calendarId}", get_calendar),
        web.get(PREFIX + "/calendars/{calendarId}/events", list_events),
        web.post(PREFIX + "/calendars/{calendarId}/events/watch", watch_events),
        web.post(PREFIX + "/channels/stop", stop_channel),
    ]


def _boundary(value: EventTime) -> dict[str, str]:
    if isinstance(value, datetime):
        return {"dateTime": rfc3339(value)}
    return {"date": value.isoformat()}


def rfc3339(value: datetime) -> str:
    """An aware datetime as RFC 3339 with second precision, UTC written as ``Z``."""
    text = value.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _timestamp(value: datetime) -> str:
    """Google's ``updated``/``created`` format: UTC with milliseconds."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
