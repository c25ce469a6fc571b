"""The one way an integration changes: lock it, check the etag and the transition table, apply
the change, record it (new revision + event), all in the caller's transaction.

RPC handlers (through `Lifecycle`), sync runs, connection tests, probes and sign-ins all change
integrations through `lock` and `apply`; `allowed` is the one check of the transition table
that answers FAILED_PRECONDITION with what would be allowed instead.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

from service.domain.exceptions import Aborted, TransitionNotAllowed
from service.domain.model import Integration
from service.domain.status import ACTION_OF, HINTS, Action, Disallowed, Status, SyncState, Trigger
from service.domain.status import transition as table
from service.domain.taxonomy import IntegrationError
from service.storage.database import Tx


def allowed(current: Status, trigger: Trigger) -> Status | None:
    """The status `trigger` leads to from `current` (None: deleted), or TransitionNotAllowed
    naming the allowed actions and, where there is one, a hint of what to do instead."""
    outcome = table(current, trigger)
    if isinstance(outcome, Disallowed):
        action = ACTION_OF.get(trigger, Action.CONFIGURE)
        raise TransitionNotAllowed(
            action, current, outcome.allowed, HINTS.get((action, current), "")
        )
    return outcome


async def lock(tx: Tx, tenant: str, integration_id: UUID, etag: str = "") -> Integration:
    """Lock the integration's row in `tx`: NotFound when it does not exist (or is another
    tenant's), Aborted when `etag` is given and stale."""
    current = await tx.integrations.lock(tenant, integration_id)
    if etag and etag != current.etag:
        raise Aborted(
            "the integration changed since you read it; get it again and retry",
            reason="ETAG_MISMATCH",
            metadata={"current_etag": current.etag, "given_etag": etag},
        )
    return current


async def apply(
    tx: Tx,
    current: Integration,
    trigger: Trigger,
    *,
    actor: str,
    reason: str,
    now: datetime,
    mutate: Callable[[Integration], Integration] = lambda i: i,
    error: IntegrationError | None = None,
) -> Integration:
    """Apply `trigger` to `current` (locked in `tx`): check the table, mutate, record.
    Must be the transaction's last write: it takes the tenant's revision lock."""
    target = allowed(current.status, trigger)
    if target is None:
        raise ValueError(f"{trigger.value} deletes; use Lifecycle.delete")
    changed = mutate(current).replace(status=target)
    changed = changed.replace(sync_state=sync_state_for(target, changed.sync_state))
    event = await tx.integrations.record_change(
        before=current,
        after=changed,
        trigger=trigger.value,
        actor=actor,
        reason=reason,
        occurred_at=now,
        error=error,
    )
    assert event.state is not None
    return event.state


async def note(
    tx: Tx,
    current: Integration,
    trigger: str,
    *,
    actor: str,
    reason: str,
    now: datetime,
    error: IntegrationError | None = None,
    changed: Integration | None = None,
) -> Integration:
    """Record an event that does not move the status (a lateness notice, a sign-in that did
    not complete, a push channel opened): the status stays, the revision moves on. `changed`
    is `current` with what the event changed besides the history, if anything."""
    if changed is not None and changed.status is not current.status:
        raise ValueError("a note never changes the status; use apply")
    event = await tx.integrations.record_change(
        before=current,
        after=changed or current,
        trigger=trigger,
        actor=actor,
        reason=reason,
        occurred_at=now,
        error=error,
    )
    assert event.state is not None
    return event.state


def sync_state_for(status: Status, previous: SyncState | None) -> SyncState | None:
    """The sub-state that goes with `status`: only ACTIVE has one (SYNCED unless SYNCING)."""
    if status is not Status.ACTIVE:
        return None
    return previous or SyncState.SYNCED
