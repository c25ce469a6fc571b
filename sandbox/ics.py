"""The iCalendar feed provider: ``GET /ics/{name}.ics`` with validators and optional basic auth."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

from aiohttp import web

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.feeds import Feed, FeedNotFound
from sandbox.traffic import STATE, endpoint, path_param

_REALM = 'Basic realm="sandbox-ics", charset="UTF-8"'
_TEXT: dict[FaultKind, str] = {
    FaultKind.NOT_FOUND: "404: Not Found",
    FaultKind.UNAUTHORIZED: "401: Unauthorized",
    FaultKind.FORBIDDEN: "403: Forbidden",
    FaultKind.QUOTA: "403: Forbidden (quota exceeded)",
    FaultKind.TOO_MANY_REQUESTS: "429: Too Many Requests",
    FaultKind.SERVER_ERROR: "500: Internal Server Error",
    FaultKind.UNAVAILABLE: "503: Service Unavailable",
}


def render_fault(fault: Fault) -> web.Response:
    """The response a calendar host would plausibly give for ``fault``."""
    if fault.kind is FaultKind.MALFORMED:
        body = fault.body or "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n"
        return web.Response(text=body, content_type="text/calendar")
    if fault.kind is FaultKind.WRONG_SHAPE:
        body = fault.body or "<!doctype html><html><body>Sign in to continue</body></html>"
        return web.Response(text=body, content_type="text/html")
    response = web.Response(text=_TEXT.get(fault.kind, "error"), status=fault.status)
    if fault.kind is FaultKind.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = _REALM
    return response


@endpoint(Provider.ICS, path_param("name"), render_fault)
async def get_feed(request: web.Request) -> web.StreamResponse:
    """``GET /ics/{name}.ics``: the feed document, or 304 when the client's copy is current."""
    try:
        feed = request.app[STATE].feeds.feed(request.match_info["name"])
    except FeedNotFound:
        return web.Response(status=404, text="404: Not Found")
    if feed.auth is not None and not feed.auth.matches(request.headers.get("Authorization")):
        challenge = {"WWW-Authenticate": _REALM}
        return web.Response(status=401, text="401: Unauthorized", headers=challenge)
    validators = {"ETag": feed.etag, "Last-Modified": http_date(feed.changed_at)}
    if _not_modified(request, feed):
        return web.Response(status=304, headers=validators)
    return web.Response(
        body=feed.body, content_type="text/calendar", charset="utf-8", headers=validators
    )


def routes() -> list[web.RouteDef]:
    """The provider's routes."""
    return [web.get("/ics/{name}.ics", get_feed)]


def http_date(moment: datetime) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``)."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)


def _not_modified(request: web.Request, feed: Feed) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weak comparison) wins over If-Modified-Since."""
    if "If-None-Match" in request.headers:
        tags = request.if_none_match or ()
        current = feed.etag.strip('"')
        return any(tag.value in ("*", current) for tag in tags)
    since = request.if_modified_since
    return since is not None and feed.changed_at.replace(microsecond=0) <= since
