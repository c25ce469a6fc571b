"""The lifecycle of integrations as people drive it: create, configure, pause, resume, delete,
and reading them back.

Every change goes through `service.engine.changes` (lock, etag, transition table, record) in
one transaction; `Lifecycle.change` is that for a single trigger.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from service.clock import Clock, utc_now
from service.connectors.registry import ConnectorRegistry
from service.domain import schedule
from service.domain.credentials import Credentials
from service.domain.exceptions import FieldViolation, InvalidArgument
from service.domain.model import Breaker, Event, Integration
from service.domain.status import Status, Trigger
from service.domain.taxonomy import IntegrationError
from service.domain.validation import (
    IntervalBounds,
    breaker_threshold,
    display_name,
    raise_if,
    request_id,
    sync_interval,
)
from service.engine import changes
from service.storage.database import Database, Tx


@dataclass(frozen=True)
class CreateSpec:
    """What a Create asks for (already decoded from protobuf)."""

    display_name: str
    connector_type: str
    request_id: str = ""
    config: dict[str, Any] | None = None
    credentials: Credentials | None = None
    sync_interval: timedelta | None = None
    #: The integration's own breaker threshold; None (or 0) uses the deployment's.
    breaker_threshold: int | None = None


@dataclass(frozen=True)
class ConfigureSpec:
    """What a Configure changes; None leaves a field as it is."""

    display_name: str | None = None
    config: dict[str, Any] | None = None
    credentials: Credentials | None = None
    sync_interval: timedelta | None = None
    #: A new breaker threshold for this integration; 0 goes back to the deployment's.
    breaker_threshold: int | None = None


class _LostCreateRace(Exception):
    """A concurrent Create with the same request id committed first."""


class Lifecycle:
    """Creates and changes integrations, one transaction per change."""

    def __init__(
        self,
        db: Database,
        connectors: ConnectorRegistry,
        bounds: IntervalBounds,
        *,
        request_id_ttl: timedelta = timedelta(hours=24),
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.bounds = bounds
        self.request_id_ttl = request_id_ttl
        self.clock = clock

    # -- reading -------------------------------------------------------------------------

    async def get(self, tenant: str, integration_id: UUID) -> Integration:
        async with self.db.connection() as tx:
            return await tx.integrations.get(tenant, integration_id)

    async def list_page(
        self,
        tenant: str,
        *,
        statuses: Sequence[Status],
        connector_type: str,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Integration]:
        async with self.db.connection() as tx:
            return await tx.integrations.list_page(
                tenant,
                statuses=statuses,
                connector_type=connector_type,
                after=after,
                limit=limit,
            )

    async def events(
        self, tenant: str, integration_id: UUID, *, before_revision: int | None, limit: int
    ) -> list[Event]:
        async with self.db.connection() as tx:
            await tx.integrations.get(tenant, integration_id)  # NOT_FOUND before an empty page
            return await tx.integrations.events(
                tenant, integration_id, before_revision=before_revision, limit=limit
            )

    # -- creating and configuring ------------------------------------------------------

    async def create(self, tenant: str, spec: CreateSpec) -> Integration:
        """A new integration in DRAFT, then CONFIGURE or TESTING when a config came with it.
        With a request id, a retry within the TTL returns the first result."""
        connector = self.connectors.get(spec.connector_type)
        violations = display_name(spec.display_name) + request_id(spec.request_id)
        if not spec.connector_type:
            violations.append(FieldViolation("connector_type", "is required", "REQUIRED"))
        elif connector is None:
            known = ", ".join(self.connectors.types)
            violations.append(
                FieldViolation(
                    "connector_type", f"unknown connector; known: {known}", "UNKNOWN_CONNECTOR"
                )
            )
        interval = self.bounds.default if spec.sync_interval is None else spec.sync_interval
        violations += sync_interval(interval, self.bounds)
        if spec.breaker_threshold:
            violations += breaker_threshold(spec.breaker_threshold)
        missing: tuple[str, ...] = ()
        if connector is not None and spec.config is not None:
            check = connector.check_config(spec.config)
            violations += check.violations
            missing = check.missing
        if connector is not None and spec.credentials is not None:
            violations += connector.check_credentials(spec.credentials)
        raise_if(violations)

        if spec.request_id:
            existing = await self._replayed(tenant, spec)
            if existing is not None:
                return existing
        try:
            return await self._insert(tenant, spec, interval, missing)
        except _LostCreateRace:
            existing = await self._replayed(tenant, spec)
            assert existing is not None
            return existing

    async def _replayed(self, tenant: str, spec: CreateSpec) -> Integration | None:
        async with self.db.connection() as tx:
            found = await tx.integrations.find_create_request(
                tenant, spec.request_id, self.clock() - self.request_id_ttl
            )
            if found is None:
                return None
            integration_id, fingerprint = found
            if fingerprint != _fingerprint(spec):
                raise InvalidArgument(
                    [
                        FieldViolation(
                            "request_id",
                            "was already used for a different Create request",
                            "REQUEST_ID_REUSED",
                        )
                    ]
                )
            return await tx.integrations.get(tenant, integration_id)

    async def _insert(
        self, tenant: str, spec: CreateSpec, interval: timedelta, missing: tuple[str, ...]
    ) -> Integration:
        now = self.clock()
        draft = Integration(
            tenant_id=tenant,
            id=uuid.uuid4(),
            display_name=spec.display_name.strip(),
            connector_type=spec.connector_type,
            status=Status.DRAFT,
            revision=0,
            created_at=now,
            updated_at=now,
            sync_interval=interval,
            breaker=Breaker(threshold=spec.breaker_threshold or None),
        )
        async with self.db.transaction() as tx:
            if spec.request_id and not await tx.integrations.remember_create_request(
                tenant,
                spec.request_id,
                draft.id,
                _fingerprint(spec),
                now=now,
                expired_before=now - self.request_id_ttl,
            ):
                raise _LostCreateRace
            if spec.credentials is not None:
                draft = draft.replace(
                    credentials_kind=spec.credentials.kind, credentials_set_at=now
                )
            event = await tx.integrations.record_change(
                before=None,
                after=draft,
                trigger="create",
                actor="api",
                reason="created",
                occurred_at=now,
            )
            assert event.state is not None
            created = event.state
            if spec.credentials is not None:
                await tx.credentials.put(tenant, created.id, spec.credentials, now)
            if spec.config is not None:
                created = await self._apply_config(tx, created, spec.config, missing, now)
            return created

    async def configure(
        self, tenant: str, integration_id: UUID, etag: str, spec: ConfigureSpec
    ) -> Integration:
        """Change name, config, credentials or interval. A config change moves the status
        (DRAFT/CONFIGURE/ACTIVE/ERROR to TESTING or CONFIGURE); the caller runs the test."""
        async with self.db.transaction() as tx:
            current = await changes.lock(tx, tenant, integration_id, etag)
            connector = self.connectors.get(current.connector_type)
            violations: list[FieldViolation] = []
            if spec.display_name is not None:
                violations += display_name(spec.display_name)
            if spec.sync_interval is not None:
                violations += sync_interval(spec.sync_interval, self.bounds)
            if spec.breaker_threshold:
                violations += breaker_threshold(spec.breaker_threshold)
            missing: tuple[str, ...] = ()
            if spec.config is not None and connector is not None:
                check = connector.check_config(spec.config)
                violations += check.violations
                missing = check.missing
            if spec.credentials is not None and connector is not None:
                violations += connector.check_credentials(spec.credentials)
            raise_if(violations)

            now = self.clock()
            updated = current.replace(
                display_name=(
                    spec.display_name.strip()
                    if spec.display_name is not None
                    else current.display_name
                ),
                sync_interval=(
                    current.sync_interval if spec.sync_interval is None else spec.sync_interval
                ),
            )
            if spec.breaker_threshold is not None:
                updated = updated.replace(
                    breaker=dataclasses.replace(
                        updated.breaker, threshold=spec.breaker_threshold or None
                    )
                )
            updated = _rescheduled(current, updated)
            if spec.credentials is not None:
                await tx.credentials.put(tenant, integration_id, spec.credentials, now)
                updated = updated.replace(
                    credentials_kind=spec.credentials.kind, credentials_set_at=now
                )
            if spec.config is not None:
                return await self._apply_config(tx, updated, spec.config, missing, now)
            if updated == current and spec.credentials is None:
                return current
            event = await tx.integrations.record_change(
                before=current,
                after=updated,
                trigger="settings_changed",
                actor="api",
                reason=_settings_reason(spec),
                occurred_at=now,
            )
            assert event.state is not None
            return event.state

    async def _apply_config(
        self,
        tx: Tx,
        current: Integration,
        config: dict[str, Any],
        missing: tuple[str, ...],
        now: datetime,
    ) -> Integration:
        trigger = Trigger.CONFIGURE_INCOMPLETE if missing else Trigger.CONFIGURE_COMPLETE
        target = changes.allowed(current.status, trigger)
        reason = (
            "configuration saved; missing: " + ", ".join(missing)
            if missing
            else "configuration complete; verifying the connection"
        )
        if target is Status.PAUSED:
            reason = "configuration saved while paused; it is verified on Resume"

        def configured(i: Integration) -> Integration:
            changed = i.replace(
                config=config,
                missing_config_fields=missing,
                last_error=i.last_error if target is i.status else None,
            )
            if target in (Status.PAUSED, Status.DISCONNECTED):
                return changed  # they keep their breaker until Resume or Reauthorize
            # Another source to verify: the old one's failures say nothing about it.
            return changed.replace(breaker=schedule.reset(changed.breaker))

        return await changes.apply(
            tx, current, trigger, actor="api", reason=reason, now=now, mutate=configured
        )

    # -- pausing, resuming, deleting ---------------------------------------------------

    async def pause(self, tenant: str, integration_id: UUID, etag: str, reason: str) -> Integration:
        return await self.change(
            tenant,
            integration_id,
            Trigger.PAUSE,
            etag=etag,
            actor="api",
            reason=reason or "paused by a person",
            # Nothing runs while paused, not even probes (the breaker halts).
            mutate=lambda i: i.replace(next_sync_at=None, breaker=schedule.paused(i.breaker)),
        )

    async def resume(self, tenant: str, integration_id: UUID, etag: str) -> Integration:
        current = await self.get(tenant, integration_id)
        trigger = Trigger.RESUME if current.config_complete else Trigger.RESUME_INCOMPLETE
        now = self.clock()
        return await self.change(
            tenant,
            integration_id,
            trigger,
            etag=etag,
            actor="api",
            reason=(
                "resumed; continuing from where it left off"
                if trigger is Trigger.RESUME
                else "resumed, but the configuration must be completed first"
            ),
            # A person's Resume is an explicit retry: the breaker closes and a sync is due now.
            mutate=lambda i: i.replace(
                next_sync_at=now if trigger is Trigger.RESUME else None,
                last_error=None,
                breaker=(
                    schedule.resumed(i.breaker, now)
                    if trigger is Trigger.RESUME
                    else schedule.reset(i.breaker)
                ),
            ),
        )

    async def delete(self, tenant: str, integration_id: UUID, etag: str) -> tuple[int, int]:
        """Delete the integration and everything that belongs to it, in one transaction.
        Returns (revision of the tombstone, records deleted)."""
        async with self.db.transaction() as tx:
            current = await changes.lock(tx, tenant, integration_id, etag)
            changes.allowed(current.status, Trigger.DELETE)
            records = await tx.integrations.delete(tenant, integration_id)
            event = await tx.integrations.record_change(
                before=current,
                after=None,
                trigger=Trigger.DELETE.value,
                actor="api",
                reason="deleted with all its data",
                occurred_at=self.clock(),
            )
            return event.revision, records

    async def change(
        self,
        tenant: str,
        integration_id: UUID,
        trigger: Trigger,
        *,
        actor: str,
        reason: str,
        etag: str = "",
        mutate: Callable[[Integration], Integration] = lambda i: i,
        error: IntegrationError | None = None,
    ) -> Integration:
        """Apply `trigger` to the integration in a transaction of its own (see
        `changes.apply`). Raises TransitionNotAllowed (FAILED_PRECONDITION) or Aborted (stale
        etag)."""
        async with self.db.transaction() as tx:
            current = await changes.lock(tx, tenant, integration_id, etag)
            return await changes.apply(
                tx,
                current,
                trigger,
                actor=actor,
                reason=reason,
                now=self.clock(),
                mutate=mutate,
                error=error,
            )


def _fingerprint(spec: CreateSpec) -> str:
    """A digest of what a Create asked for, so a reused request id with another body is
    caught. Credentials are included only through their digest, never stored."""
    payload = {
        "display_name": spec.display_name,
        "connector_type": spec.connector_type,
        "config": spec.config,
        "sync_interval": spec.sync_interval.total_seconds() if spec.sync_interval else None,
        "credentials": hashlib.sha256(spec.credentials.to_bytes()).hexdigest()
        if spec.credentials
        else None,
    }
    if spec.breaker_threshold:  # only when given, so digests remembered before it stay valid
        payload["breaker_threshold"] = spec.breaker_threshold
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _settings_reason(spec: ConfigureSpec) -> str:
    changed = [
        name
        for name, value in (
            ("display name", spec.display_name),
            ("credentials", spec.credentials),
            ("sync interval", spec.sync_interval),
            ("breaker threshold", spec.breaker_threshold),
        )
        if value is not None
    ]
    return "changed: " + ", ".join(changed)


def _rescheduled(current: Integration, updated: Integration) -> Integration:
    """With a new interval, a regular next sync moves to the new interval after the last one
    (a retry or probe keeps its time: the breaker's schedule is not the interval's)."""
    if (
        updated.sync_interval == current.sync_interval
        or updated.next_sync_at is None
        or updated.status is not Status.ACTIVE
        or updated.breaker.next_attempt_at
    ):
        return updated
    since = updated.last_synced_at or updated.updated_at
    return updated.replace(next_sync_at=since + updated.sync_interval)
