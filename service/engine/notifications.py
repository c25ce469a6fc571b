"""Push notifications: what the provider POSTs to the callback listener when a watched source
changes, and the one thing such a notification may cause — "look now".

A notification is checked against the channel we stored: its channel id finds the channel (per
tenant, the tenant being in the address we gave the provider), and its token and resource id
must match, compared in constant time. Nothing else in it is trusted or used: it carries no
data, and its message number only tells operators how far a channel got (numbers may arrive
out of order; nothing relies on them).

- `sync` (sent when a channel opens) is acknowledged. It may come before the channel is
  stored (Google sends it while answering the watch); it is then counted as unknown, which
  costs nothing: it asks for no sync.
- `exists` / `not_exists` make the integration due by the end of the coalescing window —
  unless it is due sooner already — so a burst of notifications makes one sync, which the
  scheduler claims like any other (on whichever replica sweeps first; this replica's loop is
  woken at the due time). It never waits for the sync.
- Notifications of unknown, expired or stopped channels, and forged ones, are acknowledged,
  ignored and counted. One of a channel we retired (whose resource id we know) hurries its
  stop along.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Mapping
from datetime import datetime

import structlog
from prometheus_client import Counter

from service.clock import Clock
from service.domain.push import PushPolicy
from service.storage.database import Database

log = structlog.get_logger(__name__)

#: How long a notification waits for its integration's row (a page commit in progress) before
#: it answers 503, which the provider retries.
LOCK_WAIT_MS = 2000
#: A channel id is at most this long (Google's limit); longer ones cannot be ours.
MAX_CHANNEL_ID = 64


class Outcome(enum.Enum):
    """What became of one notification (the label of the counter)."""

    SCHEDULED = "scheduled"  # the integration syncs within the coalescing window
    SYNC = "sync"  # a channel's first message: acknowledged
    NOT_SYNCING = "not_syncing"  # its integration does not sync on its own now (or retries)
    UNKNOWN = "unknown"  # no such channel here
    FORGED = "forged"  # the token or resource id does not match the channel's
    EXPIRED = "expired"  # the channel expired
    STOPPED = "stopped"  # the channel was retired (replaced, or no longer wanted)
    MALFORMED = "malformed"  # no channel id, or a resource state we do not know


NOTIFICATIONS = Counter(
    "integrations_push_notifications",
    "Push notifications received, by what became of them",
    ["outcome"],
)


class Notifications:
    """Receives the notifications of every tenant's channels (any replica may get any)."""

    def __init__(
        self,
        db: Database,
        policy: PushPolicy,
        clock: Clock,
        *,
        wake: Callable[[datetime], None] | None = None,
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock
        #: Wakes this process's scheduler at a due time (None: it runs no scheduler).
        self.wake = wake

    async def receive(self, tenant: str, headers: Mapping[str, str]) -> Outcome:
        """Handle one notification (the headers of the POST) for a channel of `tenant`."""
        outcome = await self._receive(tenant, headers)
        NOTIFICATIONS.labels(outcome.value).inc()
        if outcome not in (Outcome.SCHEDULED, Outcome.SYNC):
            log.info("push_notification_ignored", tenant_id=tenant, outcome=outcome.value)
        return outcome

    async def _receive(self, tenant: str, headers: Mapping[str, str]) -> Outcome:
        channel_id = headers.get("X-Goog-Channel-ID", "")
        state = headers.get("X-Goog-Resource-State", "")
        if not channel_id or len(channel_id) > MAX_CHANNEL_ID:
            return Outcome.MALFORMED
        due: datetime | None = None
        async with self.db.transaction() as tx:
            found = await tx.channels.find(tenant, channel_id)
            if found is None:
                return Outcome.UNKNOWN
            channel = found.channel
            token_ok = hmac.compare_digest(
                found.token.encode(), headers.get("X-Goog-Channel-Token", "").encode()
            )
            resource_ok = hmac.compare_digest(
                channel.resource_id.encode(), headers.get("X-Goog-Resource-ID", "").encode()
            )
            if not (token_ok and resource_ok):
                return Outcome.FORGED
            now = self.clock()
            if channel.retired:
                await tx.channels.retire(tenant, [channel.channel_id], now)
                return Outcome.STOPPED
            if channel.expires_at <= now:
                return Outcome.EXPIRED
            if state == "sync":
                return Outcome.SYNC
            if state not in ("exists", "not_exists"):
                return Outcome.MALFORMED
            due = await tx.channels.notified(
                channel,
                now=now,
                due=now + self.policy.coalesce,
                message=_number(headers.get("X-Goog-Message-Number", "")),
                lock_wait_ms=LOCK_WAIT_MS,
            )
        if due is None:
            return Outcome.NOT_SYNCING
        if self.wake is not None:
            self.wake(due)
        return Outcome.SCHEDULED


def _number(text: str) -> int:
    return int(text) if text.isdigit() and len(text) < 19 else 0
