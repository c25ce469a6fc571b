"""The JSON shapes of the control API: parsing requests into state types and back.

Every parser raises ``SchemaError`` (answered as HTTP 400) with a message naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sandbox.calendars import CalendarEvent, EventTime
from sandbox.credentials import BasicAuth
from sandbox.datasets import AuthKind, DatasetAuth, Pagination
from sandbox.faults import ArmedFault, Fault, FaultKind, FaultTarget, Provider
from sandbox.feeds import FeedEvent
from sandbox.gates import GateStatus
from sandbox.request_log import LoggedRequest


class SchemaError(ValueError):
    """A control request body that does not have the documented shape."""


@dataclass(frozen=True)
class EventFields:
    """The writable fields of a Google event."""

    summary: str
    description: str
    start: EventTime
    end: EventTime


@dataclass(frozen=True)
class FaultRequest:
    """A parsed ``POST /_control/faults`` body."""

    target: FaultTarget
    fault: Fault
    times: int | None


def obj(value: Any, what: str = "body") -> dict[str, Any]:
    """``value`` if it is a JSON object."""
    if not isinstance(value, dict):
        raise SchemaError(f"{what} must be a JSON object")
    return value


def string(body: dict[str, Any], key: str, default: str | None = None) -> str:
    """A required (or defaulted) string field."""
    value = body.get(key, default)
    if not isinstance(value, str):
        raise SchemaError(f"{key} must be a string")
    return value


def optional_string(body: dict[str, Any], key: str) -> str | None:
    """A string field that may be absent or null."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise SchemaError(f"{key} must be a string or null")
    return value


def optional_int(body: dict[str, Any], key: str) -> int | None:
    """An integer field that may be absent or null."""
    value = body.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise SchemaError(f"{key} must be an integer or null")
    return value


def boundary(value: Any, key: str) -> EventTime:
    """An event time from Google JSON (``{"dateTime"}`` / ``{"date"}``) or an ISO string."""
    try:
        if isinstance(value, dict):
            value = value.get("dateTime", value.get("date"))
        if not isinstance(value, str):
            raise ValueError("expected dateTime or date")
        if len(value) == 10:
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SchemaError(f"{key}: {exc}") from None
    if moment.tzinfo is None:
        raise SchemaError(f"{key} needs a timezone offset")
    return moment


def event_fields(value: Any) -> EventFields:
    """A Google event body: ``summary``, ``description``?, ``start``, ``end``."""
    body = obj(value)
    return EventFields(
        string(body, "summary", ""),
        string(body, "description", ""),
        boundary(body.get("start"), "start"),
        boundary(body.get("end"), "end"),
    )


def feed_event(value: Any) -> FeedEvent:
    """A feed event: ``uid``, ``summary``, ``start``, ``end``, ``last_modified``?, ``sequence``?."""
    body = obj(value, "event")
    modified = optional_string(body, "last_modified")
    last_modified = boundary(modified, "last_modified") if modified else None
    if last_modified is not None and not isinstance(last_modified, datetime):
        raise SchemaError("last_modified must be a date-time")
    return FeedEvent(
        uid=string(body, "uid"),
        summary=string(body, "summary", ""),
        start=boundary(body.get("start"), "start"),
        end=boundary(body.get("end"), "end"),
        last_modified=last_modified,
        sequence=optional_int(body, "sequence") or 0,
        description=string(body, "description", ""),
    )


def basic_auth(value: Any) -> BasicAuth | None:
    """``{"username", "password"}`` or null."""
    if value is None:
        return None
    body = obj(value, "auth")
    return BasicAuth(string(body, "username"), string(body, "password"))


def dataset_auth(value: Any) -> DatasetAuth:
    """``{"kind": none|bearer|api_key|basic, "secret"?, "header"?, "username"?, "password"?}``."""
    if value is None:
        return DatasetAuth()
    body = obj(value, "auth")
    try:
        kind = AuthKind(string(body, "kind"))
        basic = basic_auth(body) if kind is AuthKind.BASIC else None
        secret = optional_string(body, "secret")
        return DatasetAuth(kind, secret, string(body, "header", "X-API-Key"), basic)
    except ValueError as exc:
        raise SchemaError(f"auth: {exc}") from None


def pagination(value: Any) -> Pagination:
    """One of ``body_link``, ``link_header``, ``cursor``."""
    try:
        return Pagination(value if value is not None else Pagination.BODY_LINK)
    except ValueError:
        raise SchemaError(f"pagination must be one of {[p.value for p in Pagination]}") from None


def fault_request(value: Any) -> FaultRequest:
    """``{"provider", "resource"?, "kind", "times"? (null = until cleared), ...Fault fields}``."""
    body = obj(value)
    try:
        target = FaultTarget(Provider(string(body, "provider")), optional_string(body, "resource"))
        delay = body.get("delay")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
            raise SchemaError("delay must be a number")
        fault = Fault(
            kind=FaultKind(string(body, "kind")),
            reason=optional_string(body, "reason"),
            retry_after=optional_int(body, "retry_after"),
            gate=optional_string(body, "gate"),
            delay=float(delay) if delay is not None else None,
            body=optional_string(body, "body"),
            purpose=optional_string(body, "purpose"),
        )
    except ValueError as exc:
        raise SchemaError(str(exc)) from None
    times = optional_int(body, "times") if "times" in body else 1
    if times is not None and times < 1:
        raise SchemaError("times must be at least 1, or null for until cleared")
    return FaultRequest(target, fault, times)


def armed_fault_json(target: FaultTarget, armed: ArmedFault) -> dict[str, Any]:
    """An armed fault as the control API lists it."""
    fault = armed.fault
    return {
        "provider": target.provider.value,
        "resource": target.resource,
        "kind": fault.kind.value,
        "remaining": armed.remaining,
        "reason": fault.reason,
        "retry_after": fault.retry_after,
        "gate": fault.gate,
        "delay": fault.delay,
        "purpose": fault.purpose,
    }


def logged_request_json(entry: LoggedRequest) -> dict[str, Any]:
    """A request-log entry as the control API lists it."""
    return {
        "at": entry.at.isoformat(),
        "method": entry.method,
        "path": entry.path,
        "query": entry.query,
        "provider": entry.provider.value,
        "resource": entry.resource,
        "purpose": entry.purpose,
        "status": entry.status,
        "fault": entry.fault.value if entry.fault else None,
    }


def gate_json(status: GateStatus) -> dict[str, Any]:
    """A gate's state as the control API reports it."""
    return {
        "name": status.name,
        "open": status.is_open,
        "waiting": status.waiting,
        "arrived": status.arrived,
    }


def stored_event_json(event: CalendarEvent) -> dict[str, Any]:
    """A stored Google event, including its change numbers (for debugging)."""
    return {
        "id": event.id,
        "status": event.status,
        "summary": event.summary,
        "description": event.description,
        "start": event.start.isoformat(),
        "end": event.end.isoformat(),
        "sequence": event.sequence,
        "updated": event.updated.isoformat(),
        "created_seq": event.created_seq,
        "updated_seq": event.updated_seq,
    }
