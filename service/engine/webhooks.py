"""Webhook endpoints as people manage them: create, read, change, enable, rotate the secret,
delete, and read the delivery log.

A secret is made here and handed back exactly once (by create and rotate); storage seals it,
and nothing else ever returns or logs it. Endpoint URLs get the same checks as connector URLs:
an absolute http(s) URL, and, unless the deployment allows private networks, not an address of
a private or local network (checked again by the network guard on every delivery, since a name
can resolve elsewhere later).
"""

from __future__ import annotations

import dataclasses
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from yarl import URL

from service.clock import Clock, utc_now
from service.connectors.network import BlockedAddress, check_literal
from service.domain import webhook_signatures
from service.domain.exceptions import Aborted, FailedPrecondition, FieldViolation
from service.domain.validation import raise_if, webhook_url
from service.domain.webhooks import (
    DEFAULT_ROTATION_OVERLAP,
    MAX_DESCRIPTION,
    MAX_ENDPOINTS,
    MAX_ROTATION_OVERLAP,
    Delivery,
    Endpoint,
    EventType,
)
from service.storage.database import Database, Tx


@dataclass(frozen=True)
class EndpointSpec:
    """What a CreateWebhook asks for (already decoded from protobuf)."""

    url: str
    description: str = ""
    #: Empty: every type.
    event_types: frozenset[EventType] = frozenset()


@dataclass(frozen=True)
class EndpointChange:
    """What an UpdateWebhook changes; None leaves a field as it is."""

    url: str | None = None
    description: str | None = None
    event_types: frozenset[EventType] | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class WithSecret:
    """An endpoint and its new secret, shown this once."""

    endpoint: Endpoint
    secret: str = dataclasses.field(repr=False)


class WebhookEndpoints:
    """Creates and changes a tenant's webhook endpoints, one transaction per change."""

    def __init__(
        self, db: Database, *, allow_private_networks: bool, clock: Clock = utc_now
    ) -> None:
        self.db = db
        self.allow_private_networks = allow_private_networks
        self.clock = clock

    async def create(self, tenant: str, spec: EndpointSpec) -> WithSecret:
        """A new enabled endpoint with a new secret (INVALID_ARGUMENT for a bad URL,
        RESOURCE_EXHAUSTED-like FAILED_PRECONDITION past the per-tenant limit)."""
        raise_if(self._check_url(spec.url) + _check_description(spec.description))
        now = self.clock()
        secret = webhook_signatures.new_secret(secrets.token_bytes(webhook_signatures.SECRET_BYTES))
        endpoint = Endpoint(
            tenant_id=tenant,
            id=uuid.uuid4(),
            url=spec.url,
            created_at=now,
            updated_at=now,
            description=spec.description,
            event_types=spec.event_types,
        )
        async with self.db.transaction() as tx:
            if await tx.webhooks.count(tenant) >= MAX_ENDPOINTS:
                raise FailedPrecondition(
                    f"a tenant may have at most {MAX_ENDPOINTS} webhooks; delete one first",
                    reason="TOO_MANY_WEBHOOKS",
                    metadata={"limit": str(MAX_ENDPOINTS)},
                )
            stored = await tx.webhooks.create(endpoint, secret)
        return WithSecret(stored, secret)

    async def get(self, tenant: str, endpoint_id: UUID) -> Endpoint:
        async with self.db.connection() as tx:
            return await tx.webhooks.get(tenant, endpoint_id)

    async def list_page(
        self, tenant: str, *, after: tuple[datetime, UUID] | None, limit: int
    ) -> list[Endpoint]:
        async with self.db.connection() as tx:
            return await tx.webhooks.list_page(tenant, after=after, limit=limit)

    async def update(
        self, tenant: str, endpoint_id: UUID, etag: str, change: EndpointChange
    ) -> Endpoint:
        """Change an endpoint. Enabling it (also after the brake disabled it) makes its pending
        deliveries due at once and starts its failing streak afresh; disabling parks them."""
        violations = []
        if change.url is not None:
            violations += self._check_url(change.url)
        if change.description is not None:
            violations += _check_description(change.description)
        raise_if(violations)
        now = self.clock()
        async with self.db.transaction() as tx:
            current = await _lock(tx, tenant, endpoint_id, etag)
            changed = dataclasses.replace(
                current,
                url=current.url if change.url is None else change.url,
                description=(
                    current.description if change.description is None else change.description
                ),
                event_types=(
                    current.event_types if change.event_types is None else change.event_types
                ),
            )
            if change.enabled is True and not current.enabled:
                changed = dataclasses.replace(
                    changed, enabled=True, disabled_reason="", disabled_at=None, failing_since=None
                )
            elif change.enabled is False and current.enabled:
                changed = dataclasses.replace(
                    changed,
                    enabled=False,
                    disabled_reason="disabled by a person (UpdateWebhook)",
                    disabled_at=now,
                )
            return await tx.webhooks.update(changed, now, was_enabled=current.enabled)

    async def rotate_secret(
        self, tenant: str, endpoint_id: UUID, etag: str, overlap: timedelta | None
    ) -> WithSecret:
        """A new secret; the old one keeps signing beside it for `overlap` (default 24h, at
        most 7 days, 0 for none) so receivers can switch without missing a delivery."""
        overlap = DEFAULT_ROTATION_OVERLAP if overlap is None else overlap
        if not timedelta(0) <= overlap <= MAX_ROTATION_OVERLAP:
            raise_if(
                [
                    FieldViolation(
                        "overlap",
                        f"must be between 0s and {MAX_ROTATION_OVERLAP.days} days",
                        "OUT_OF_BOUNDS",
                    )
                ]
            )
        now = self.clock()
        secret = webhook_signatures.new_secret(secrets.token_bytes(webhook_signatures.SECRET_BYTES))
        async with self.db.transaction() as tx:
            current = await _lock(tx, tenant, endpoint_id, etag)
            stored = await tx.webhooks.rotate_secret(
                current, secret, overlap_until=now + overlap if overlap else None, now=now
            )
        return WithSecret(stored, secret)

    async def delete(self, tenant: str, endpoint_id: UUID, etag: str) -> None:
        """Delete an endpoint and its delivery log; pending deliveries are dropped."""
        async with self.db.transaction() as tx:
            await _lock(tx, tenant, endpoint_id, etag)
            await tx.webhooks.delete(tenant, endpoint_id)

    async def deliveries(
        self,
        tenant: str,
        endpoint_id: UUID,
        *,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Delivery]:
        """The endpoint's delivery log, newest first."""
        async with self.db.connection() as tx:
            await tx.webhooks.get(tenant, endpoint_id)  # NOT_FOUND before an empty page
            return await tx.webhooks.deliveries(tenant, endpoint_id, after=after, limit=limit)

    def _check_url(self, value: str) -> list[FieldViolation]:
        found = webhook_url(value)
        if found or self.allow_private_networks:
            return found
        try:
            check_literal(URL(value).host or "")
        except BlockedAddress as exc:
            return [
                FieldViolation(
                    "url",
                    f"points at {exc.address}, a private or local network address, which this "
                    "deployment does not allow",
                    "BLOCKED_ADDRESS",
                )
            ]
        return []


def _check_description(value: str) -> list[FieldViolation]:
    if len(value) > MAX_DESCRIPTION:
        return [
            FieldViolation(
                "description", f"must be at most {MAX_DESCRIPTION} characters", "TOO_LONG"
            )
        ]
    return []


async def _lock(tx: Tx, tenant: str, endpoint_id: UUID, etag: str) -> Endpoint:
    current = await tx.webhooks.lock(tenant, endpoint_id)
    if etag and etag != current.etag:
        raise Aborted(
            "the webhook changed since you read it; get it again and retry",
            reason="ETAG_MISMATCH",
            metadata={"current_etag": current.etag, "given_etag": etag},
        )
    return current
