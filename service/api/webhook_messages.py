"""Webhook protobuf messages to domain values and back (see `convert` for the rest)."""

from __future__ import annotations

from collections.abc import Iterable

from integrations.v1 import webhooks_pb2 as wh

from service.api.convert import EnumMap, duration, timestamp
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.domain.webhooks import Attempt, Delivery, DeliveryState, Endpoint, EventType

EVENT_TYPE = EnumMap(EventType, wh.WebhookEventType, "WEBHOOK_EVENT_TYPE")
DELIVERY_STATE = EnumMap(DeliveryState, wh.WebhookDeliveryState, "WEBHOOK_DELIVERY_STATE")


def event_types_in(values: Iterable[int], field: str) -> frozenset[EventType]:
    """The event types of a filter; INVALID_ARGUMENT for an unknown or unspecified one."""
    found: set[EventType] = set()
    violations = []
    for i, number in enumerate(values):
        member = EVENT_TYPE.from_pb.get(number)
        if member is None:
            violations.append(
                FieldViolation(f"{field}[{i}]", "is not a webhook event type", "INVALID_ENUM")
            )
        else:
            found.add(member)
    if violations:
        raise InvalidArgument(violations)
    return frozenset(found)


def webhook_out(e: Endpoint) -> wh.Webhook:
    """The API view of an endpoint (never its secret)."""
    return wh.Webhook(
        id=str(e.id),
        url=e.url,
        description=e.description,
        event_types=sorted(EVENT_TYPE.to_pb[t] for t in e.event_types),
        enabled=e.enabled,
        disabled_reason=e.disabled_reason,
        disable_time=timestamp(e.disabled_at),
        failing_since=timestamp(e.failing_since),
        previous_secret_expire_time=timestamp(e.previous_secret_expires_at),
        etag=e.etag,
        create_time=timestamp(e.created_at),
        update_time=timestamp(e.updated_at),
    )


def attempt_out(a: Attempt) -> wh.WebhookAttempt:
    return wh.WebhookAttempt(
        attempt=a.number,
        attempt_time=timestamp(a.at),
        status_code=a.status_code,
        latency=duration(a.latency),
        error=a.error,
    )


def delivery_out(d: Delivery) -> wh.WebhookDelivery:
    return wh.WebhookDelivery(
        event_id=str(d.event_id),
        event_type=EVENT_TYPE.to_pb[d.event_type],
        integration_id=str(d.integration_id) if d.integration_id else "",
        revision=d.revision,
        state=DELIVERY_STATE.to_pb[d.state],
        create_time=timestamp(d.created_at),
        next_attempt_time=timestamp(d.next_attempt_at),
        finish_time=timestamp(d.finished_at),
        attempts=[attempt_out(a) for a in d.attempts],
    )
