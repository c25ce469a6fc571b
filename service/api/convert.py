"""Protobuf messages to domain values and back.

Domain enums mirror the proto enums through one mapping per enum, built by name and checked at
import, so adding a value on one side without the other fails at start-up, not at run time.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
from collections.abc import Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from google.protobuf import duration_pb2, json_format, struct_pb2, timestamp_pb2
from google.protobuf.message import Message
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.api.kept import Kept
from service.domain.credentials import Credentials
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.domain.model import Event, Integration, TestOutcome
from service.domain.push import PushState
from service.domain.status import Action, Status, SyncState, allowed_actions
from service.domain.sync import RecordChange, StoredRecord, SyncOutcome, SyncRun, SyncTrigger
from service.domain.taxonomy import ErrorCategory, ErrorCode, IntegrationError

E = TypeVar("E", bound=enum.Enum)


class EnumMap(Generic[E]):
    """A domain enum <-> proto enum mapping by name (PREFIX_NAME), checked when built."""

    def __init__(self, domain: type[E], proto: Any, prefix: str) -> None:
        self.to_pb: dict[E, Any] = {}  # Any: mypy-protobuf types each enum as its own NewType
        self.from_pb: dict[int, E] = {}
        for member in domain:
            number = proto.Value(f"{prefix}_{member.name}")  # raises if the proto lacks it
            self.to_pb[member] = number
            self.from_pb[number] = member
        self.unspecified: Any = 0
        extra = set(proto.values()) - set(self.from_pb) - {0}
        if extra:
            raise RuntimeError(f"{prefix}: proto values without a domain member: {extra}")

    def out(self, member: E | None) -> Any:
        """The proto number of `member`; the *_UNSPECIFIED zero for None."""
        return self.unspecified if member is None else self.to_pb[member]


STATUS = EnumMap(Status, pb.Status, "STATUS")
SYNC_STATE = EnumMap(SyncState, pb.SyncState, "SYNC_STATE")
ACTION = EnumMap(Action, pb.Action, "ACTION")
ERROR_CODE = EnumMap(ErrorCode, pb.ErrorCode, "ERROR_CODE")
ERROR_CATEGORY = EnumMap(ErrorCategory, pb.ErrorCategory, "ERROR_CATEGORY")
SYNC_RUN_TRIGGER = EnumMap(SyncTrigger, pb.SyncRunTrigger, "SYNC_RUN_TRIGGER")
SYNC_RUN_OUTCOME = EnumMap(SyncOutcome, pb.SyncRunOutcome, "SYNC_RUN_OUTCOME")
PUSH_STATE = EnumMap(PushState, pb.PushState, "PUSH_STATE")

#: The oneof field of ConnectorConfig that holds each built-in connector's config.
BUILTIN_CONFIG_FIELDS = {"google_calendar", "ics_feed", "rest_json"}

_CREDENTIALS_KIND = {
    None: pb.CREDENTIALS_KIND_UNSPECIFIED,
    "oauth": pb.CREDENTIALS_KIND_OAUTH,
    "bearer_token": pb.CREDENTIALS_KIND_BEARER_TOKEN,
    "api_key": pb.CREDENTIALS_KIND_API_KEY,
    "basic": pb.CREDENTIALS_KIND_BASIC,
}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """`value` as a Timestamp (a naive datetime is UTC), as Timestamp.FromDatetime makes it
    but in a fraction of its time: an Integration carries up to eight of them."""
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    _fill_time(stamp, value)
    return stamp


def _set_time(message: Message, field: str, value: datetime | None) -> None:
    """Set the Timestamp `field` of `message` to `value` (left unset for None), in place:
    a Timestamp built apart and handed to a constructor is copied."""
    if value is not None:
        _fill_time(getattr(message, field), value)


def _fill_time(stamp: timestamp_pb2.Timestamp, value: datetime) -> None:
    since = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    stamp.seconds = since.days * 86400 + since.seconds
    stamp.nanos = since.microseconds * 1000


def duration(value: timedelta | None) -> duration_pb2.Duration | None:
    if value is None:
        return None
    d = duration_pb2.Duration()
    d.FromTimedelta(value)
    return d


#: google.protobuf.Duration's range (±10,000 years) and Timestamp's (years 1 to 9999).
MAX_DURATION_SECONDS = 315_576_000_000
MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS = -62_135_596_800, 253_402_300_799


def duration_in(message: Message, field: str) -> timedelta | None:
    """A Duration field of a request, None when unset; negative or invalid ones (outside the
    Duration range, nanos of another sign) are an error."""
    if not message.HasField(field):
        return None
    value: duration_pb2.Duration = getattr(message, field)
    if (
        abs(value.seconds) > MAX_DURATION_SECONDS
        or abs(value.nanos) >= 1_000_000_000
        or (value.seconds > 0 > value.nanos)
        or (value.seconds < 0 < value.nanos)
    ):
        raise InvalidArgument(
            [FieldViolation(field, "is not a valid duration", "INVALID_DURATION")]
        )
    if value.seconds < 0 or value.nanos < 0:
        raise InvalidArgument([FieldViolation(field, "must not be negative", "NEGATIVE")])
    return value.ToTimedelta()


def timestamp_in(value: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A Timestamp of a request as a naive UTC datetime (the form stored so far), or
    InvalidArgument when it is outside Timestamp's range (years 1 to 9999)."""
    if (
        not MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS
        or not 0 <= value.nanos < 1_000_000_000
    ):
        raise InvalidArgument(
            [
                FieldViolation(
                    field, "must be a valid time between the years 1 and 9999", "INVALID_TIME"
                )
            ]
        )
    return value.ToDatetime()


def config_in(connector_type: str, config: pb.ConnectorConfig) -> dict[str, Any] | None:
    """The config dict of a request's ConnectorConfig (None when unset). The oneof must match
    the connector type; empty fields are left out so they count as missing."""
    which = config.WhichOneof("kind")
    if which is None:
        return None
    expected = connector_type if connector_type in BUILTIN_CONFIG_FIELDS else "plugin"
    if which != expected:
        raise InvalidArgument(
            [
                FieldViolation(
                    f"config.{which}",
                    f"does not match connector type {connector_type!r}; set config.{expected}",
                    "CONFIG_TYPE_MISMATCH",
                )
            ]
        )
    if which == "plugin":
        return dict(json_format.MessageToDict(config.plugin))
    return dict(json_format.MessageToDict(getattr(config, which), preserving_proto_field_name=True))


def config_out(connector_type: str, config: dict[str, Any]) -> pb.ConnectorConfig:
    """The API view of a stored configuration. Parsing JSON into a message is the costliest
    part of answering a Get, and configurations repeat (an integration is read far more often
    than it is configured): the parsed messages of recent ones are kept, by their JSON. The
    message returned is shared, never to be changed: setting it as a field of another message
    copies it."""
    if not config:
        return pb.ConnectorConfig()
    key = (connector_type, _config_key(config))
    parsed = _parsed_configs.get(key)
    if parsed is None:
        parsed = pb.ConnectorConfig()
        if connector_type in BUILTIN_CONFIG_FIELDS:
            json_format.ParseDict(
                config, getattr(parsed, connector_type), ignore_unknown_fields=True
            )
        else:
            parsed.plugin.update(config)
        if not isinstance(key[1], str) or len(key[1]) <= _PARSED_CONFIG_BYTES:
            _parsed_configs.keep(key, parsed)
    return parsed


def _config_key(config: dict[str, Any]) -> Hashable:
    """What tells two configurations apart: their items when every value is a plain one (the
    built-in connectors'; a stored configuration's keys always come back in one order), else
    their JSON."""
    items = tuple((k, type(v), v) for k, v in config.items())  # True == 1, but not as JSON
    try:
        hash(items)
    except TypeError:  # a list or an object among the values
        return json.dumps(config, sort_keys=True, separators=(",", ":"))
    return items


#: Parsed configurations kept, and the largest kept (a plugin's may be big; those are parsed
#: each time): at most 16 MiB of JSON.
_PARSED_CONFIG_BYTES = 16 * 1024
_parsed_configs: Kept[tuple[str, Hashable], pb.ConnectorConfig] = Kept(1024)


def credentials_in(message: pb.Credentials, field: str = "credentials") -> Credentials | None:
    """Domain credentials from the write-only input (None when unset), with the required
    parts checked."""
    which = message.WhichOneof("kind")
    if which is None:
        return None
    missing: list[str] = []
    secret: dict[str, Any]
    if which == "oauth":
        o = message.oauth
        expires = (
            timestamp_in(o.expire_time, f"{field}.oauth.expire_time")
            if o.HasField("expire_time")
            else None
        )
        secret = {
            "access_token": o.access_token,
            "refresh_token": o.refresh_token,
            "expires_at": expires.isoformat() if expires is not None else None,
        }
        if not o.access_token and not o.refresh_token:
            missing.append("oauth.access_token")
    elif which == "basic":
        secret = {"username": message.basic.username, "password": message.basic.password}
        if not message.basic.username:
            missing.append("basic.username")
        elif ":" in message.basic.username:
            raise InvalidArgument(
                [
                    FieldViolation(
                        f"{field}.basic.username",
                        "must not contain ':' (HTTP Basic authentication cannot carry it)",
                        "INVALID_CHARACTERS",
                    )
                ]
            )
    else:
        secret = {"token": getattr(message, which)}
        if not secret["token"]:
            missing.append(which)
    if missing:
        raise InvalidArgument(
            [FieldViolation(f"{field}.{m}", "is required", "REQUIRED") for m in missing]
        )
    return Credentials(kind=which, secret=secret)


def error_out(error: IntegrationError | None) -> pb.IntegrationError | None:
    if error is None:
        return None
    message = pb.IntegrationError()
    _fill_error(message, error)
    return message


def _fill_error(message: pb.IntegrationError, error: IntegrationError) -> None:
    message.category = ERROR_CATEGORY.to_pb[error.category]
    message.code = ERROR_CODE.to_pb[error.code]
    message.message = error.message
    message.what_it_means = error.what_it_means
    message.solution = error.solution
    if error.retry_after is not None:
        message.retry_after.FromTimedelta(error.retry_after)
    message.support_reference = error.support_reference or ""
    _set_time(message, "occur_time", error.occurred_at)


def integration_out(i: Integration, *, now: datetime, threshold: int) -> pb.Integration:
    """The API view of an integration (credentials reduced to whether they are set).

    The same integration is read far more often than it changes (a dashboard lists the same
    page again and again), so recent views are kept, by everything they are made of: every
    field of the integration, whether it is late now, and the brake's threshold. Two equal
    keys make the same message, so a kept view is never stale; an integration whose fields
    cannot be hashed is converted each time. The message returned is shared, never to be
    changed: setting it as a field of another message copies it."""
    try:
        key = (_integration_fields(i), i.late(now), threshold)
        view = _views.get(key)
    except TypeError:  # a field that cannot be hashed: a plugin's check that gave a list, say
        return _integration_view(i, now=now, threshold=threshold)
    if view is None:
        view = _views.keep(key, _integration_view(i, now=now, threshold=threshold))
    return view


def _integration_fields(i: Integration) -> tuple[Hashable, ...]:
    """Every field of the integration, its configuration by `_config_key`."""
    values = _INTEGRATION_FIELDS(i)
    return (*values[:_CONFIG_AT], _config_key(i.config), *values[_CONFIG_AT + 1 :])


_FIELD_NAMES = tuple(f.name for f in dataclasses.fields(Integration))
_INTEGRATION_FIELDS = operator.attrgetter(*_FIELD_NAMES)
_CONFIG_AT = _FIELD_NAMES.index("config")

#: Views kept (about 1 KiB each, plus the integration's own values the key holds).
_views: Kept[tuple[Hashable, ...], pb.Integration] = Kept(4096)


def _integration_view(i: Integration, *, now: datetime, threshold: int) -> pb.Integration:
    """The view itself. Its parts are filled in place, not built as messages of their own
    and handed to the constructor, which copies each: the copies were about a third of the
    conversion's time."""
    m = pb.Integration(
        id=str(i.id),
        display_name=i.display_name,
        connector_type=i.connector_type,
        status=STATUS.to_pb[i.status],
        sync_state=SYNC_STATE.out(i.sync_state),
        record_count=i.record_count,
        revision=i.revision,
        etag=i.etag,
        missing_config_fields=i.missing_config_fields,
        allowed_actions=_ALLOWED_ACTIONS[i.status],
        late=i.late(now),
    )
    m.config.CopyFrom(config_out(i.connector_type, i.config))  # (shared: copied, not held)
    credentials = m.credentials
    credentials.has_credentials = i.credentials_kind is not None
    credentials.kind = _CREDENTIALS_KIND[i.credentials_kind]
    _set_time(credentials, "set_time", i.credentials_set_at)
    if i.last_error is not None:
        _fill_error(m.last_error, i.last_error)
    b = i.breaker
    breaker = m.breaker
    breaker.state = _BREAKER_STATE[b.phase]
    breaker.consecutive_failures = b.consecutive_failures
    breaker.threshold = threshold
    _set_time(breaker, "open_time", b.opened_at)
    _set_time(breaker, "next_attempt_time", b.next_attempt_at)
    if i.sync_interval is not None:
        m.sync_interval.FromTimedelta(i.sync_interval)
    _set_time(m, "last_sync_time", i.last_synced_at)
    _set_time(m, "next_sync_time", i.next_sync_at)
    _set_time(m, "create_time", i.created_at)
    _set_time(m, "update_time", i.updated_at)
    shown = i.push.shown()  # the API view of the push state (its bookkeeping stays inside)
    push = m.push
    push.state = PUSH_STATE.to_pb[shown.state]
    _set_time(push, "expire_time", shown.expires_at)
    push.reason = shown.reason
    _set_time(push, "retry_time", shown.retry_at)
    return m


#: Each status's allowed actions as proto numbers.
_ALLOWED_ACTIONS = {s: [ACTION.to_pb[a] for a in allowed_actions(s)] for s in Status}


#: Breaker.phase as the proto's BreakerState.
_BREAKER_STATE = {
    "CLOSED": pb.BREAKER_STATE_CLOSED,
    "OPEN": pb.BREAKER_STATE_OPEN,
    "HALF_OPEN": pb.BREAKER_STATE_HALF_OPEN,
}


def event_out(e: Event) -> pb.IntegrationEvent:
    return pb.IntegrationEvent(
        revision=e.revision,
        integration_id=str(e.integration_id),
        trigger=e.trigger,
        from_status=STATUS.out(e.from_status),
        to_status=STATUS.out(e.to_status),
        reason=e.reason,
        actor=e.actor,
        error=error_out(e.error),
        occur_time=timestamp(e.occurred_at),
    )


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def test_out(outcome: TestOutcome, integration: pb.Integration) -> api.TestConnectionResponse:
    return api.TestConnectionResponse(
        ok=outcome.ok,
        error=error_out(outcome.error),
        duration=duration(outcome.duration),
        integration=integration,
    )


def sync_run_out(run: SyncRun) -> pb.SyncRun:
    return pb.SyncRun(
        id=str(run.id),
        integration_id=str(run.integration_id),
        trigger=SYNC_RUN_TRIGGER.to_pb[run.trigger],
        outcome=SYNC_RUN_OUTCOME.to_pb[run.outcome],
        start_time=timestamp(run.started_at),
        end_time=timestamp(run.ended_at),
        pages=run.pages,
        records_upserted=run.records_upserted,
        records_deleted=run.records_deleted,
        full_resync=run.full_resync,
        error=error_out(run.error),
        records_rejected=run.records_rejected,
        rejected_example=run.rejected_example,
        reason=run.note or (run.error.message if run.error else ""),
    )


def record_out(record: StoredRecord) -> pb.Record:
    return pb.Record(
        id=record.id,
        data=struct(record.data),
        update_time=timestamp(record.updated_at),
        sequence=record.seq,
    )


def change_out(change: RecordChange) -> pb.RecordChange:
    if change.data is None:
        return pb.RecordChange(
            sequence=change.seq,
            kind=pb.RECORD_CHANGE_KIND_DELETE,
            record_id=change.record_id,
            change_time=timestamp(change.changed_at),
        )
    record = StoredRecord(
        id=change.record_id, data=change.data, updated_at=change.changed_at, seq=change.seq
    )
    return pb.RecordChange(
        sequence=change.seq,
        kind=pb.RECORD_CHANGE_KIND_UPSERT,
        record_id=change.record_id,
        record=record_out(record),
        change_time=timestamp(change.changed_at),
    )
