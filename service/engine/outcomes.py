"""What an attempt found, and what that does to the integration: the one place for the rules
that decide whether an outcome still counts (fencing) and for recording the verdict.

Three kinds of attempt end in an outcome — a sync run, a connection test, a breaker probe —
and each is recorded the same way, in the transaction that writes it: lock the integration
(with its lease version), check that the outcome still belongs to it (`stale`), ask the
schedule for the verdict (success closes the breaker; a failure is counted, retried, or opens
it) and apply it (`record`). Changing the fencing rules means editing `stale`, and nothing
else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from service.domain import push
from service.domain.model import Integration
from service.domain.push import PushPolicy
from service.domain.schedule import SYNCABLE, Attempt, Schedule, probing
from service.domain.sync import SyncRun, SyncTrigger
from service.domain.taxonomy import IntegrationError
from service.engine import changes
from service.storage.claims import Held
from service.storage.database import Tx


@dataclass(frozen=True)
class Attempted:
    """An attempt as it started: its kind, the integration as it read it, and the claim it
    holds (the lease version; None for a person's TestConnection, which claims nothing)."""

    kind: Attempt
    integration: Integration
    lease_version: int | None = None


def stale(held: Held, attempted: Attempted) -> str | None:
    """Why the attempt's outcome must not be recorded against the integration as it is now
    (`held`, locked); None when it still counts."""
    current = held.integration
    version = attempted.lease_version
    if version is not None and held.lease_version != version:
        # Claimed by another worker after this one's claim expired (it stalled), or by a
        # person's Sync: the newer claim's outcome is the one that counts.
        return f"its claim was taken over (lease version {version} -> {held.lease_version})"
    if attempted.kind is Attempt.SYNC and current.status not in SYNCABLE:
        return f"the integration became {current.status.value} (a person stopped it)"
    if attempted.kind is Attempt.PROBE and not probing(current):
        return "the safety brake is no longer on (a person acted meanwhile)"
    if current.config != attempted.integration.config:
        return "the configuration changed; the next sync uses the new one"
    if current.credentials_set_at != attempted.integration.credentials_set_at:
        # Reauthorized meanwhile: an outcome of the replaced credentials must not be recorded
        # against the new ones (e.g. a rejected old token must not disconnect them).
        return "the credentials changed; the next sync uses the new ones"
    return None


class Outcomes:
    """Records outcomes with the deployment's schedule (breaker policy and jitter) and push
    policy."""

    def __init__(self, schedule: Schedule, push_policy: PushPolicy | None = None) -> None:
        self.schedule = schedule
        self.push_policy = push_policy or PushPolicy()

    async def record(
        self,
        tx: Tx,
        current: Integration,
        attempted: Attempted,
        *,
        error: IntegrationError | None,
        what: str,
        actor: str,
        now: datetime,
        also: Callable[[Integration], Integration] = lambda i: i,
        run: SyncRun | None = None,
    ) -> Integration:
        """Apply the verdict on `error` (None: it worked) to `current`, locked in `tx` and not
        `stale`. `what` names the attempt in the event ("sync run #3"; for a success, the
        sentence saying so); `also` adds the attempt's own changes (a sync's counts); a sync
        `run` that succeeded is judged for push too (`domain.push.after_sync`)."""
        if error is None:
            verdict = self.schedule.succeeded(current, now, what=what, attempt=attempted.kind)
        else:
            verdict = self.schedule.failed(current, error, now, what=what)
        pushed = None
        if error is None and run is not None:
            pushed = push.after_sync(
                current,
                attempted.integration,
                scheduled=run.trigger is SyncTrigger.SCHEDULED and not run.full_resync,
                changes=run.records_upserted + run.records_deleted,
                next_sync_at=verdict.next_sync_at,
                now=now,
                policy=self.push_policy,
            )

        def mutate(i: Integration) -> Integration:
            changed = also(verdict.apply(i).replace(last_error=error))
            if pushed is not None:
                changed = changed.replace(push=pushed.push, next_sync_at=pushed.next_sync_at)
            return changed

        return await changes.apply(
            tx,
            current,
            verdict.trigger,
            actor=actor,
            reason=verdict.reason + (pushed.note if pushed else ""),
            now=now,
            error=error,
            mutate=mutate,
        )
