"""The control API under ``/_control``: drive a sandbox running in another process.

JSON in, JSON out. Malformed bodies answer 400 ``{"error": ...}``, unknown calendars, feeds,
datasets or events 404. Control requests are not written to the request log.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from sandbox import bulk, schema
from sandbox.faults import Provider
from sandbox.push import REFUSALS, PushFaults
from sandbox.state import SandboxState
from sandbox.traffic import STATE

PREFIX = "/_control"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map parsing errors to 400 and unknown names to 404, both as JSON."""
    try:
        return await handler(request)
    except (schema.SchemaError, ValueError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except LookupError as exc:
        return web.json_response({"error": f"not found: {exc}"}, status=404)


def _state(request: web.Request) -> SandboxState:
    return request.config_dict[STATE]


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.body_exists:
        return {}
    try:
        return schema.obj(await request.json())
    except json.JSONDecodeError as exc:
        raise schema.SchemaError(f"body is not JSON: {exc}") from None


def _ok(**extra: Any) -> web.Response:
    return web.json_response({"ok": True, **extra})


_routes = web.RouteTableDef()


@_routes.get("/health")
async def health(request: web.Request) -> web.Response:
    """Readiness probe."""
    return _ok()


@_routes.get("/state")
async def overview(request: web.Request) -> web.Response:
    """What the sandbox currently serves."""
    state = _state(request)
    return web.json_response(
        {
            "calendars": state.google.calendar_ids(),
            "feeds": state.feeds.names(),
            "datasets": state.datasets.names(),
            "oauth": {
                "expires_in": state.oauth.expires_in,
                "deny_consent": state.oauth.deny_consent,
            },
        }
    )


@_routes.post("/reset")
async def reset(request: web.Request) -> web.Response:
    """Forget everything (data, tokens, faults, log) and release parked requests."""
    _state(request).reset()
    return _ok()


# --- Google ------------------------------------------------------------------------------


@_routes.put("/google/calendars/{calendar}")
async def put_calendar(request: web.Request) -> web.Response:
    """Create or replace a calendar: ``{"summary"?, "time_zone"?}``."""
    body = await _body(request)
    calendar = _state(request).google.add_calendar(
        request.match_info["calendar"],
        schema.string(body, "summary", ""),
        schema.string(body, "time_zone", "UTC"),
    )
    return _ok(id=calendar.id)


@_routes.delete("/google/calendars/{calendar}")
async def delete_calendar(request: web.Request) -> web.Response:
    """Delete a calendar (later requests get 404)."""
    _state(request).google.remove_calendar(request.match_info["calendar"])
    return _ok()


@_routes.get("/google/calendars/{calendar}/events")
async def list_stored_events(request: web.Request) -> web.Response:
    """Every stored event, deleted ones included, with their change numbers."""
    events = _state(request).google.events(request.match_info["calendar"], include_cancelled=True)
    return web.json_response({"events": [schema.stored_event_json(e) for e in events]})


@_routes.put("/google/calendars/{calendar}/events/{event}")
async def put_event(request: web.Request) -> web.Response:
    """Add or change an event: ``{"summary", "description"?, "start", "end"}``."""
    fields = schema.event_fields(await _body(request))
    event = _state(request).google.put_event(
        request.match_info["calendar"],
        request.match_info["event"],
        summary=fields.summary,
        description=fields.description,
        start=fields.start,
        end=fields.end,
    )
    return _ok(id=event.id, etag=event.etag)


@_routes.delete("/google/calendars/{calendar}/events/{event}")
async def delete_event(request: web.Request) -> web.Response:
    """Delete (cancel) an event."""
    _state(request).google.delete_event(request.match_info["calendar"], request.match_info["event"])
    return _ok()


@_routes.post("/google/calendars/{calendar}/invalidate")
async def invalidate(request: web.Request) -> web.Response:
    """Make all sync tokens stale (410); ``{"drop": [event ids]}`` vanish without tombstones."""
    drop = (await _body(request)).get("drop", [])
    if not isinstance(drop, list) or not all(isinstance(i, str) for i in drop):
        raise schema.SchemaError("drop must be a list of event ids")
    _state(request).google.invalidate_sync_tokens(request.match_info["calendar"], drop)
    return _ok()


@_routes.post("/google/calendars/{calendar}/generate")
async def generate_events(request: web.Request) -> web.Response:
    """Create or change many events at once: ``{"count", "prefix"?, "revision"?}`` (see
    ``sandbox.bulk``)."""
    body = await _body(request)
    count = schema.optional_int(body, "count") or 0
    revision = schema.optional_int(body, "revision") or 0
    seq = bulk.generate_events(
        _state(request).google,
        request.match_info["calendar"],
        count,
        prefix=schema.string(body, "prefix", "ev"),
        revision=revision,
    )
    return _ok(seq=seq)


@_routes.get("/google/push/channels")
async def list_channels(request: web.Request) -> web.Response:
    """The live push channels, and the ids of those stopped through channels.stop."""
    push = _state(request).push
    channels = [
        {
            "id": c.id,
            "calendar_id": c.calendar_id,
            "resource_id": c.resource_id,
            "address": c.address,
            "expiration": c.expiration.isoformat(),
            "messages": c.number,
        }
        for c in push.live()
    ]
    return web.json_response({"channels": channels, "stopped": push.stopped})


@_routes.post("/google/push/channels/{channel}/expire")
async def expire_channel(request: web.Request) -> web.Response:
    """Fault: the channel dies now, earlier than agreed, without a word to its owner."""
    _state(request).push.expire(request.match_info["channel"])
    return _ok()


@_routes.post("/google/push/faults")
async def push_faults(request: web.Request) -> web.Response:
    """``{"drop"?: n|null (null: all), "reorder"?: bool, "refuse"?: [reason, ...]}``."""
    body = await _body(request)
    faults = _state(request).push.faults
    if "drop" in body:
        drop = body["drop"]
        if drop is not None and (not isinstance(drop, int) or drop < 0):
            raise schema.SchemaError("drop must be a count or null (every notification)")
        faults.drop = drop
    if "reorder" in body:
        if not isinstance(body["reorder"], bool):
            raise schema.SchemaError("reorder must be a boolean")
        faults.reorder = body["reorder"]
    refuse = body.get("refuse", [])
    if not isinstance(refuse, list) or not all(r in REFUSALS for r in refuse):
        raise schema.SchemaError(f"refuse must be a list of: {', '.join(REFUSALS)}")
    faults.refuse.extend(refuse)
    return _ok()


@_routes.delete("/google/push/faults")
async def clear_push_faults(request: web.Request) -> web.Response:
    """Push works normally again."""
    _state(request).push.faults = PushFaults()
    return _ok()


@_routes.get("/google/push/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    """Every notification sent (or dropped), oldest first."""
    sent = [
        {
            "channel_id": d.channel_id,
            "calendar_id": d.calendar_id,
            "state": d.state,
            "number": d.number,
            "status": d.status,
            "dropped": d.dropped,
        }
        for d in _state(request).push.deliveries
    ]
    return web.json_response({"deliveries": sent})


# --- OAuth -------------------------------------------------------------------------------


@_routes.put("/oauth/clients/{client_id}")
async def put_client(request: web.Request) -> web.Response:
    """Register a client: ``{"client_secret"?: str|null, "redirect_uris"?: [str]}``."""
    body = await _body(request)
    uris = body.get("redirect_uris", [])
    if not isinstance(uris, list) or not all(isinstance(u, str) for u in uris):
        raise schema.SchemaError("redirect_uris must be a list of strings")
    _state(request).oauth.add_client(
        request.match_info["client_id"], schema.optional_string(body, "client_secret"), tuple(uris)
    )
    return _ok()


@_routes.post("/oauth/access-tokens")
async def add_access_token(request: web.Request) -> web.Response:
    """Register a static bearer token: ``{"token", "expires_in"?, "scope"?}``."""
    body = await _body(request)
    expires_in = schema.optional_int(body, "expires_in")
    _state(request).add_access_token(
        schema.string(body, "token"),
        expires_in=3600 if expires_in is None else expires_in,
        scope=schema.string(body, "scope", ""),
    )
    return _ok()


@_routes.patch("/oauth/settings")
async def oauth_settings(request: web.Request) -> web.Response:
    """Change ``{"expires_in"?: int, "deny_consent"?: bool}``."""
    body = await _body(request)
    oauth = _state(request).oauth
    expires_in = schema.optional_int(body, "expires_in")
    deny = body.get("deny_consent")
    if deny is not None and not isinstance(deny, bool):
        raise schema.SchemaError("deny_consent must be a boolean")
    if expires_in is not None:
        oauth.expires_in = expires_in
    if deny is not None:
        oauth.deny_consent = deny
    return _ok(expires_in=oauth.expires_in, deny_consent=oauth.deny_consent)


@_routes.post("/oauth/revoke")
async def revoke(request: web.Request) -> web.Response:
    """Revoke ``{"token": access or refresh token}``'s family, or ``{"all": true}``."""
    body = await _body(request)
    oauth = _state(request).oauth
    if body.get("all") is True:
        oauth.revoke_all()
        return _ok()
    if not oauth.revoke(schema.string(body, "token")):
        raise LookupError("unknown token")
    return _ok()


@_routes.post("/oauth/expire")
async def expire(request: web.Request) -> web.Response:
    """Expire every access token issued so far (refresh tokens stay usable)."""
    _state(request).oauth.expire_access_tokens()
    return _ok()


@_routes.get("/oauth/stats")
async def oauth_stats(request: web.Request) -> web.Response:
    """Token-endpoint calls: ``{"token_calls": {"total": n, "by_grant_type": {...}}}``."""
    oauth = _state(request).oauth
    calls = {"total": oauth.token_calls_total, "by_grant_type": dict(oauth.token_calls)}
    return web.json_response({"token_calls": calls})


# --- ICS ---------------------------------------------------------------------------------


@_routes.put("/ics/{name}")
async def put_feed(request: web.Request) -> web.Response:
    """Create or replace a feed: ``{"events": [...], "auth"?: {"username", "password"}}``."""
    body = await _body(request)
    events = body.get("events", [])
    if not isinstance(events, list):
        raise schema.SchemaError("events must be a list")
    feed = _state(request).feeds.set_feed(
        request.match_info["name"],
        [schema.feed_event(e) for e in events],
        auth=schema.basic_auth(body.get("auth")),
    )
    return _ok(etag=feed.etag)


@_routes.put("/ics/{name}/raw")
async def put_raw_feed(request: web.Request) -> web.Response:
    """Serve the request body verbatim as the feed (for malformed-feed tests)."""
    feed = _state(request).feeds.set_raw(request.match_info["name"], await request.read())
    return _ok(etag=feed.etag)


@_routes.post("/ics/{name}/generate")
async def generate_feed(request: web.Request) -> web.Response:
    """Serve a feed of many generated events: ``{"count", "revision"?}``."""
    body = await _body(request)
    feed = bulk.generate_feed(
        _state(request).feeds,
        request.match_info["name"],
        schema.optional_int(body, "count") or 0,
        revision=schema.optional_int(body, "revision") or 0,
    )
    return _ok(etag=feed.etag, bytes=len(feed.body))


@_routes.delete("/ics/{name}")
async def delete_feed(request: web.Request) -> web.Response:
    """Delete a feed (it then answers 404)."""
    _state(request).feeds.remove_feed(request.match_info["name"])
    return _ok()


# --- REST --------------------------------------------------------------------------------


@_routes.put("/rest/{dataset}")
async def put_dataset(request: web.Request) -> web.Response:
    """Create or replace a dataset.

    ``{"records": [...], "id_field"?, "pagination"?: body_link|link_header|cursor,
    "page_size"?, "auth"?: {"kind", "secret"?, "header"?, "username"?, "password"?}}``.
    """
    body = await _body(request)
    records = body.get("records", [])
    page_size = schema.optional_int(body, "page_size")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise schema.SchemaError("records must be a list of objects")
    dataset = _state(request).datasets.set_dataset(
        request.match_info["dataset"],
        records,
        id_field=schema.string(body, "id_field", "id"),
        pagination=schema.pagination(body.get("pagination")),
        page_size=50 if page_size is None else page_size,
        auth=schema.dataset_auth(body.get("auth")),
    )
    return _ok(records=len(dataset.records))


@_routes.delete("/rest/{dataset}")
async def delete_dataset(request: web.Request) -> web.Response:
    """Delete a dataset (it then answers 404)."""
    _state(request).datasets.remove_dataset(request.match_info["dataset"])
    return _ok()


# --- Faults, gates, request log ----------------------------------------------------------


@_routes.post("/faults")
async def inject_fault(request: web.Request) -> web.Response:
    """Arm a fault (see ``schema.fault_request``); ``"times": null`` = until cleared."""
    parsed = schema.fault_request(await _body(request))
    _state(request).faults.inject(parsed.target, parsed.fault, times=parsed.times)
    return _ok()


@_routes.get("/faults")
async def list_faults(request: web.Request) -> web.Response:
    """Every armed fault, in queue order."""
    armed = _state(request).faults.armed()
    return web.json_response({"faults": [schema.armed_fault_json(t, a) for t, a in armed]})


@_routes.delete("/faults")
async def clear_faults(request: web.Request) -> web.Response:
    """Disarm faults: all, or ``?provider=`` (and ``&resource=``)."""
    provider = request.query.get("provider")
    _state(request).clear_faults(
        Provider(provider) if provider else None, request.query.get("resource")
    )
    return _ok()


@_routes.get("/gates")
async def list_gates(request: web.Request) -> web.Response:
    """Every gate named so far, with how many requests it holds."""
    statuses = _state(request).gates.statuses()
    return web.json_response({"gates": [schema.gate_json(s) for s in statuses]})


@_routes.post("/gates/{name}/open")
async def open_gate(request: web.Request) -> web.Response:
    """Release the requests parked on a gate and let later ones through."""
    gate = _state(request).gates[request.match_info["name"]]
    gate.open()
    return web.json_response(schema.gate_json(gate.status()))


@_routes.post("/gates/{name}/close")
async def close_gate(request: web.Request) -> web.Response:
    """Make later slow requests wait on the gate again."""
    gate = _state(request).gates[request.match_info["name"]]
    gate.close()
    return web.json_response(schema.gate_json(gate.status()))


@_routes.get("/requests")
async def list_requests(request: web.Request) -> web.Response:
    """The request log, oldest first; filter with ``?provider=&resource=&purpose=``."""
    log = _state(request).log
    provider = request.query.get("provider")
    entries = log.entries(
        provider=Provider(provider) if provider else None,
        resource=request.query.get("resource"),
        purpose=request.query.get("purpose"),
    )
    return web.json_response(
        {"total": log.total, "requests": [schema.logged_request_json(e) for e in entries]}
    )


@_routes.delete("/requests")
async def clear_requests(request: web.Request) -> web.Response:
    """Empty the request log."""
    _state(request).log.clear()
    return _ok()


def create_control_app() -> web.Application:
    """The control API as a sub-application, to mount at ``PREFIX``."""
    app = web.Application(middlewares=[_errors])
    app.add_routes(_routes)
    return app
