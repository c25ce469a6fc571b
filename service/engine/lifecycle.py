"""The lifecycle of integrations: create, configure, pause, resume, delete, and the one path
through which every status change is made.

`Lifecycle.change` locks the integration, checks the etag, asks the transition table, applies
the caller's mutation and records the change (new revision + event) in one transaction. The
RPC handlers and the background engine both change integrations only through it.
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

import asyncpg

from service.clock import Clock, utc_now
from service.connectors.registry import ConnectorRegistry
from service.domain import schedule
from service.domain.credentials import Credentials
from service.domain.exceptions import Aborted, FieldViolation, InvalidArgument, TransitionNotAllowed
from service.domain.model import Breaker, Event, Integration
from service.domain.status import (
    ACTION_OF,
    Action,
    Disallowed,
    Status,
    SyncState,
    Trigger,
    transition,
)
from service.domain.taxonomy import IntegrationError
from service.domain.validation import (
    IntervalBounds,
    breaker_threshold,
    display_name,
    raise_if,
    request_id,
    sync_interval,
)
from service.storage import integrations as store
from service.storage.database import Database
from service.storage.sealing import KeyRing, row_binding


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
        keys: KeyRing,
        bounds: IntervalBounds,
        *,
        request_id_ttl: timedelta = timedelta(hours=24),
        clock: Clock = utc_now,
    ) -> None:
        self.db = db
        self.connectors = connectors
        self.keys = keys
        self.bounds = bounds
        self.request_id_ttl = request_id_ttl
        self.clock = clock

    # -- reading -------------------------------------------------------------------------

    async def get(self, tenant: str, integration_id: UUID) -> Integration:
        async with self.db.connection() as conn:
            return await store.get(conn, tenant, integration_id)

    async def list_page(
        self,
        tenant: str,
        *,
        statuses: Sequence[Status],
        connector_type: str,
        after: tuple[datetime, UUID] | None,
        limit: int,
    ) -> list[Integration]:
        async with self.db.connection() as conn:
            return await store.list_page(
                conn,
                tenant,
                statuses=statuses,
                connector_type=connector_type,
                after=after,
                limit=limit,
            )

    async def events(
        self, tenant: str, integration_id: UUID, *, before_revision: int | None, limit: int
    ) -> list[Event]:
        async with self.db.connection() as conn:
            await store.get(conn, tenant, integration_id)  # NOT_FOUND before an empty page
            return await store.list_events(
                conn, tenant, integration_id, before_revision=before_revision, limit=limit
            )

    async def credentials(self, tenant: str, integration_id: UUID) -> Credentials | None:
        """The integration's credentials, unsealed (for connectors only; never returned)."""
        async with self.db.connection() as conn:
            found = await store.get_credentials(conn, tenant, integration_id)
        if found is None:
            return None
        return Credentials.from_bytes(self.keys.open(found[1], row_binding(tenant, integration_id)))

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
            violations += _credential_violations(connector.credential_kinds, spec.credentials)
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
        async with self.db.connection() as conn:
            found = await store.find_create_request(
                conn, tenant, spec.request_id, self.clock() - self.request_id_ttl
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
            return await store.get(conn, tenant, integration_id)

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
        async with self.db.transaction() as conn:
            if spec.request_id:
                expired = now - self.request_id_ttl
                await store.purge_create_requests(conn, tenant, expired)
                if not await store.remember_create_request(
                    conn, tenant, spec.request_id, draft.id, _fingerprint(spec), now, expired
                ):
                    raise _LostCreateRace
            if spec.credentials is not None:
                draft = draft.replace(
                    credentials_kind=spec.credentials.kind, credentials_set_at=now
                )
            event = await store.record_change(
                conn,
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
                await self._store_credentials(conn, created, spec.credentials, now)
            if spec.config is not None:
                created = await self._apply_config(conn, created, spec.config, missing, now)
            return created

    async def configure(
        self, tenant: str, integration_id: UUID, etag: str, spec: ConfigureSpec
    ) -> Integration:
        """Change name, config, credentials or interval. A config change moves the status
        (DRAFT/CONFIGURE/ACTIVE/ERROR to TESTING or CONFIGURE); the caller runs the test."""
        async with self.db.transaction() as conn:
            current = await self._lock(conn, tenant, integration_id, etag)
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
                violations += _credential_violations(connector.credential_kinds, spec.credentials)
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
                await self._store_credentials(conn, updated, spec.credentials, now)
                updated = updated.replace(
                    credentials_kind=spec.credentials.kind, credentials_set_at=now
                )
            if spec.config is not None:
                return await self._apply_config(conn, updated, spec.config, missing, now)
            if updated == current and spec.credentials is None:
                return current
            event = await store.record_change(
                conn,
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
        conn: asyncpg.Connection,
        current: Integration,
        config: dict[str, Any],
        missing: tuple[str, ...],
        now: datetime,
    ) -> Integration:
        trigger = Trigger.CONFIGURE_INCOMPLETE if missing else Trigger.CONFIGURE_COMPLETE
        target = _allowed(current, trigger)
        changed = current.replace(
            config=config,
            missing_config_fields=missing,
            status=target,
            sync_state=_sync_state_for(target, current.sync_state),
            last_error=current.last_error if target is current.status else None,
        )
        if target not in (Status.PAUSED, Status.DISCONNECTED):
            # Another source to verify: the old one's failures say nothing about it. (Paused
            # and disconnected ones keep their breaker until Resume or Reauthorize.)
            changed = changed.replace(breaker=schedule.reset(changed.breaker))
        reason = (
            "configuration saved; missing: " + ", ".join(missing)
            if missing
            else "configuration complete; verifying the connection"
        )
        if target is Status.PAUSED:
            reason = "configuration saved while paused; it is verified on Resume"
        event = await store.record_change(
            conn,
            before=current,
            after=changed,
            trigger=trigger.value,
            actor="api",
            reason=reason,
            occurred_at=now,
        )
        assert event.state is not None
        return event.state

    async def _store_credentials(
        self,
        conn: asyncpg.Connection,
        integration: Integration,
        credentials: Credentials,
        now: datetime,
    ) -> None:
        sealed = self.keys.seal(
            credentials.to_bytes(), row_binding(integration.tenant_id, integration.id)
        )
        await store.put_credentials(
            conn, integration.tenant_id, integration.id, credentials.kind, sealed, now
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
        async with self.db.transaction() as conn:
            current = await self._lock(conn, tenant, integration_id, etag)
            _check(current, Trigger.DELETE)
            records = await store.delete(conn, tenant, integration_id)
            event = await store.record_change(
                conn,
                before=current,
                after=None,
                trigger=Trigger.DELETE.value,
                actor="api",
                reason="deleted with all its data",
                occurred_at=self.clock(),
            )
            return event.revision, records

    # -- the one path for status changes -----------------------------------------------

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
        """Apply `trigger` to the integration: lock, check the etag and the table, mutate,
        record. Raises TransitionNotAllowed (FAILED_PRECONDITION) or Aborted (stale etag)."""
        async with self.db.transaction() as conn:
            current = await self._lock(conn, tenant, integration_id, etag)
            return await self.apply(
                conn, current, trigger, actor=actor, reason=reason, mutate=mutate, error=error
            )

    async def lock(
        self, conn: asyncpg.Connection, tenant: str, integration_id: UUID, etag: str = ""
    ) -> Integration:
        """Lock the integration's row in the caller's transaction (for engines that commit
        more with a change, e.g. a sync run with its SYNC transition)."""
        return await self._lock(conn, tenant, integration_id, etag)

    async def apply(
        self,
        conn: asyncpg.Connection,
        current: Integration,
        trigger: Trigger,
        *,
        actor: str,
        reason: str,
        mutate: Callable[[Integration], Integration] = lambda i: i,
        error: IntegrationError | None = None,
    ) -> Integration:
        """`change` inside the caller's transaction, on an integration it locked with `lock`.
        Must be the caller's last write: it takes the tenant's revision lock."""
        target = _allowed(current, trigger)
        changed = mutate(current).replace(status=target)
        changed = changed.replace(sync_state=_sync_state_for(target, changed.sync_state))
        event = await store.record_change(
            conn,
            before=current,
            after=changed,
            trigger=trigger.value,
            actor=actor,
            reason=reason,
            occurred_at=self.clock(),
            error=error,
        )
        assert event.state is not None
        return event.state

    async def _lock(
        self, conn: asyncpg.Connection, tenant: str, integration_id: UUID, etag: str
    ) -> Integration:
        current = await store.get(conn, tenant, integration_id, for_update=True)
        if etag and etag != current.etag:
            raise Aborted(
                "the integration changed since you read it; get it again and retry",
                reason="ETAG_MISMATCH",
                metadata={"current_etag": current.etag, "given_etag": etag},
            )
        return current


def _check(current: Integration, trigger: Trigger) -> Status | None:
    """The status `trigger` leads to (None: deleted), or TransitionNotAllowed."""
    outcome = transition(current.status, trigger)
    if isinstance(outcome, Disallowed):
        action = ACTION_OF.get(trigger, Action.CONFIGURE)
        raise TransitionNotAllowed(action, current.status, outcome.allowed)
    return outcome


def _allowed(current: Integration, trigger: Trigger) -> Status:
    """Like _check, for triggers that keep the integration."""
    outcome = _check(current, trigger)
    if outcome is None:
        raise ValueError(f"{trigger.value} deletes; use Lifecycle.delete")
    return outcome


def _sync_state_for(status: Status, previous: SyncState | None) -> SyncState | None:
    if status is not Status.ACTIVE:
        return None
    return previous or SyncState.SYNCED


def _credential_violations(
    accepted: frozenset[str], credentials: Credentials
) -> list[FieldViolation]:
    if credentials.kind in accepted:
        return []
    return [
        FieldViolation(
            "credentials",
            f"{credentials.kind} credentials are not accepted by "
            f"this connector; use one of {', '.join(sorted(accepted))}",
            "UNSUPPORTED_CREDENTIALS",
        )
    ]


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
