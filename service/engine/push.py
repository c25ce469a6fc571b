"""Push channels, reconciled: every replica's scheduler loop opens, renews and stops them.

Rather than a hook in every transition, one component compares what each integration should
have with what it has, and acts. A change that may matter to a channel (a Pause, a Delete, a
new configuration or credentials, the safety brake, a first sync) marks the integration's
`push.check_at` in the change's own transaction (`domain.push.affects`); a sweep claims the
marked ones (`FOR UPDATE SKIP LOCKED`, with a claim that lapses should this replica die) and,
for each:

- it should have a channel (push configured here, its connector can push, `wants_channel`, a
  cursor for its configuration) and has none that is current: a new one is opened; the
  integration's push becomes ACTIVE and polls at the safety net's long interval. After a gap
  (no channel before) a sync is due at once, so changes from before the channel are not left
  to the safety net.
- its channel expires within `renew_before`, or belongs to an older configuration or
  credentials: a new one is opened first and the old one stopped after, so there is no gap.
- it should not have one (paused, deleted, braked, disconnected…): its channels are stopped,
  push is OFF and it polls at its own interval again.
- opening failed (the provider refused, quota, unreachable): push is UNAVAILABLE with the
  reason, the integration polls at its own interval, and push is retried later.

Stopping is its own step: a channel that must go is *retired* (`stop_at`), and the sweep
claims due stops like checks. Only the account that opened a channel can stop it, so a channel
whose integration let go of the credentials it was opened with (a Delete, a Reauthorize) keeps
a sealed copy of them for the stop (refreshed here if needed, never stored back). A stop that
fails is retried; a channel that expired meanwhile, or that nothing can stop any more (no
credentials left, or the let-go ones refused), is forgotten, logged, and left to expire.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote
from uuid import UUID

import structlog

from service.clock import Clock
from service.connectors.auth import AccessTokens, StoredTokens
from service.connectors.base import PushConnector, PushRefused, Source, WatchRequest
from service.connectors.http import purpose
from service.connectors.provider_failures import ProviderFailure
from service.domain.credentials import Credentials
from service.domain.exceptions import FailedPrecondition, NotFound
from service.domain.model import Integration
from service.domain.push import (
    Channel,
    Push,
    PushPolicy,
    PushState,
    human_interval,
    off_reason,
    wants_channel,
    with_push,
)
from service.domain.taxonomy import ErrorCode
from service.engine import changes
from service.engine.providers import Providers
from service.engine.sync_runner import SyncCursor
from service.oauth import tokens
from service.oauth.providers import OAuthSetup
from service.oauth.refresh import UnstoredTokens
from service.oauth.token_endpoint import TokenEndpoint
from service.storage.database import Database, Tx
from service.storage.push import StopDue

log = structlog.get_logger(__name__)

#: The path of the notification endpoint on the callback listener, followed by the tenant.
NOTIFICATION_PATH = "/push/"
#: The actor of the changes the reconciler records.
ACTOR = "push"
#: Event triggers (the status never changes).
PUSH_ACTIVE, PUSH_RENEWED, PUSH_OFF, PUSH_UNAVAILABLE = (
    "push_active",
    "push_renewed",
    "push_off",
    "push_unavailable",
)

#: What a provider answers a stop authorised by credentials the integration let go of when it
#: will never take them again (revoked, say): the channel is left to expire.
LET_GO_REFUSALS = frozenset(
    {ErrorCode.TOKEN_EXPIRED, ErrorCode.INVALID_CREDENTIALS, ErrorCode.ACCESS_DENIED}
)
#: A failed stop is retried after this, doubling, up to an hour.
STOP_RETRY = timedelta(seconds=30)
STOP_RETRY_MAX = timedelta(hours=1)


@dataclass(frozen=True)
class Opened:
    """A channel the provider just opened, with its secret token."""

    channel: Channel
    token: str


class PushReconciler:
    """Keeps every integration's push channel as it should be; see the module docstring."""

    def __init__(
        self,
        db: Database,
        providers: Providers,
        policy: PushPolicy,
        clock: Clock,
        *,
        oauth: OAuthSetup,
        token_endpoint: TokenEndpoint,
        batch: int = 50,
        claim: timedelta = timedelta(minutes=2),
        concurrency: int = 8,
    ) -> None:
        self.db = db
        self.providers = providers
        self.policy = policy
        self.clock = clock
        self.oauth = oauth
        self.token_endpoint = token_endpoint
        self.batch = batch
        #: How long a claimed check or stop stays claimed (another replica takes it after).
        self.claim = claim
        self._slots = asyncio.Semaphore(concurrency)
        #: The connector types whose providers can push.
        self.types = tuple(sorted(providers.connectors.pushing))

    async def reconcile(self) -> int:
        """One pass: look at the integrations whose channel needs it, then make the stops
        that are due (those just retired included). Returns how many it handled."""
        now = self.clock()
        async with self.db.transaction() as tx:
            due = await tx.channels.checks_due(now, self.types, self.batch, now + self.claim)
        await asyncio.gather(*(self._guarded(self.check, t, i) for t, i in due))
        now = self.clock()
        async with self.db.transaction() as tx:
            stops = await tx.channels.stops_due(now, self.batch, now + self.claim)
        await asyncio.gather(*(self._guarded(self.stop, s) for s in stops))
        return len(due) + len(stops)

    async def _guarded(self, work: Any, *args: Any) -> None:
        async with self._slots:
            try:
                await work(*args)
            except Exception:
                # The claim lapses and the next sweep tries again.
                log.warning("push_reconcile_failed", exc_info=True)

    # -- one integration -----------------------------------------------------------------

    async def check(self, tenant: str, integration_id: UUID) -> None:
        """Bring one integration's channel to what it should be."""
        async with self.db.connection() as tx:
            try:
                integration = await tx.integrations.get(tenant, integration_id)
            except NotFound:
                return  # deleted: its channels were retired with it
            channels = [c for c in await tx.channels.of(tenant, integration_id) if not c.retired]
            synced = await self._synced_with_config(tx, integration)
        now = self.clock()
        connector = self.providers.connectors.get(integration.connector_type)
        if not (
            isinstance(connector, PushConnector)
            and self.policy.configured
            and wants_channel(integration)
            and synced
        ):
            await self._settle(integration, channels, Push(), PUSH_OFF, off_reason(integration))
            return
        push = integration.push
        if push.state is PushState.UNAVAILABLE and push.retry_at and push.retry_at > now:
            # Waiting to retry: a channel still open is not trusted meanwhile.
            await self._settle(integration, channels, push.replace(check_at=push.retry_at))
            return
        if self.policy.address is None:
            await self._failed(integration, channels, self.policy.refusal)
            return
        renew_at = now + self.policy.renew_before
        current = [c for c in channels if c.belongs_to(integration) and c.expires_at > renew_at]
        if current:
            keep = current[0]
            await self._settle(integration, channels, self._active(push, keep, now), keep=keep)
            return
        try:
            opened = await self._open(connector, integration, now)
        except PushRefused as refused:
            await self._failed(integration, channels, refused.message)
            return
        except ProviderFailure as failure:
            await self._failed(integration, channels, failure.message)
            return
        await self._record_opened(integration, opened, renewal=bool(channels))

    async def _synced_with_config(self, tx: Tx, integration: Integration) -> bool:
        """Whether a sync of its current configuration succeeded (so a notification has a
        cursor to continue from, not a full listing of another calendar)."""
        stored, account = await tx.sync.get_cursor(integration.tenant_id, integration.id)
        return SyncCursor.load(stored, integration.config, account).position is not None

    async def _open(
        self, connector: PushConnector, integration: Integration, now: datetime
    ) -> Opened:
        assert self.policy.address is not None
        request = WatchRequest(
            channel_id=f"ch-{secrets.token_hex(16)}",
            token=secrets.token_urlsafe(32),
            address=self.policy.address + NOTIFICATION_PATH + quote(integration.tenant_id, ""),
            expires_at=now + self.policy.ttl,
        )
        _, source = await self.providers.open(integration)
        with purpose("push"):
            watching = await connector.watch(source, request)
        log.info(
            "push_channel_opened",
            tenant_id=integration.tenant_id,
            integration_id=str(integration.id),
            channel_id=request.channel_id,
            expires_at=watching.expires_at.isoformat(),
        )
        channel = Channel(
            tenant_id=integration.tenant_id,
            channel_id=request.channel_id,
            integration_id=integration.id,
            connector_type=integration.connector_type,
            resource_id=watching.resource_id,
            config=integration.config,
            credentials_set_at=integration.credentials_set_at,
            opened_at=now,
            expires_at=watching.expires_at,
        )
        return Opened(channel, request.token)

    async def _record_opened(self, seen: Integration, opened: Opened, *, renewal: bool) -> None:
        """Store the new channel and make it the integration's, retiring the others — unless
        the integration changed meanwhile so that it is not wanted: then it is retired too."""
        channel = opened.channel
        async with self.db.transaction() as tx:
            try:
                current = await changes.lock(tx, seen.tenant_id, seen.id)
            except NotFound:
                current = None
            now = self.clock()
            if current is None or not (
                wants_channel(current)
                and channel.belongs_to(current)
                and current.push.state is seen.push.state
                and current.push.retry_at == seen.push.retry_at
            ):
                # Changed while the channel was being opened so that it is not wanted (or push
                # failed meanwhile): the change marked a new check, which decides afresh; this
                # channel is stopped. A change that leaves all of that as it was (a sync that
                # ended meanwhile marks a check too) keeps it: a new check would open another.
                await tx.channels.insert(dataclasses.replace(channel, stop_at=now), opened.token)
                return
            await tx.channels.insert(channel, opened.token)
            others = await tx.channels.of(current.tenant_id, current.id)
            await tx.channels.retire(
                current.tenant_id,
                [c.channel_id for c in others if c.channel_id != channel.channel_id],
                now,
            )
            gap = current.push.state is not PushState.ACTIVE and not renewal
            push = self._active(current.push, channel, now)
            interval = human_interval(max(current.sync_interval, self.policy.poll_interval))
            expires = channel.expires_at.isoformat(timespec="seconds")
            if gap:
                push = push.replace(pending=True)
                reason = (
                    f"push channel opened: changes sync within seconds, and it polls every "
                    f"{interval} as the safety net; the channel expires at {expires} and is "
                    "renewed before; a sync follows now, for changes made before it opened"
                )
            elif any(c.belongs_to(current) for c in others if c.channel_id != channel.channel_id):
                reason = f"push channel renewed: the new channel expires at {expires}"
            else:
                reason = (
                    "push channel replaced for the new configuration or credentials (the old "
                    f"one is stopped); it expires at {expires}"
                )
            await changes.note(
                tx,
                current,
                PUSH_ACTIVE if gap else PUSH_RENEWED,
                actor=ACTOR,
                reason=reason,
                now=now,
                changed=with_push(current, push, due_now=gap, now=now),
            )

    def _active(self, push: Push, channel: Channel, now: datetime) -> Push:
        renew = channel.expires_at - self.policy.renew_before
        return push.replace(
            state=PushState.ACTIVE,
            reason="",
            expires_at=channel.expires_at,
            retry_at=None,
            poll_interval=self.policy.poll_interval,
            check_at=max(renew, now),
        )

    async def _failed(self, seen: Integration, channels: list[Channel], reason: str) -> None:
        now = self.clock()
        retry = now + self.policy.retry_after
        push = seen.push.replace(
            state=PushState.UNAVAILABLE,
            reason=reason,
            expires_at=None,
            poll_interval=None,
            retry_at=retry,
            check_at=retry,
        )
        log.info(
            "push_unavailable",
            tenant_id=seen.tenant_id,
            integration_id=str(seen.id),
            reason=reason,
        )
        said = (
            f"push unavailable: {reason}; it polls every {human_interval(seen.sync_interval)} "
            f"and push is retried at {retry.isoformat(timespec='seconds')}"
        )
        await self._settle(seen, channels, push, PUSH_UNAVAILABLE, said)

    async def _settle(
        self,
        seen: Integration,
        channels: list[Channel],
        push: Push,
        trigger: str = "",
        reason: str = "",
        *,
        keep: Channel | None = None,
    ) -> None:
        """Retire every channel but `keep`; give the integration `push`, recording an event
        (`trigger`, `reason`) when what the API shows changes."""
        async with self.db.transaction() as tx:
            try:
                current = await changes.lock(tx, seen.tenant_id, seen.id)
            except NotFound:
                return
            if current.push.check_at != seen.push.check_at:
                return  # changed meanwhile: the change marked a new check, which decides
            now = self.clock()
            await tx.channels.retire(
                current.tenant_id, [c.channel_id for c in channels if c is not keep], now
            )
            shown = (push.state, push.reason, push.expires_at, push.retry_at)
            before = current.push
            if shown == (before.state, before.reason, before.expires_at, before.retry_at):
                await tx.channels.set_check(current.tenant_id, current.id, push.check_at)
                return
            push = push.replace(pending=before.pending, notified_at=before.notified_at)
            await changes.note(
                tx,
                current,
                trigger or PUSH_OFF,
                actor=ACTOR,
                reason=reason or "push channel stopped",
                now=now,
                changed=with_push(current, push, due_now=False, now=now),
            )

    # -- stopping --------------------------------------------------------------------------

    async def stop(self, due: StopDue) -> None:
        """Stop one retired channel at its provider, and forget it."""
        channel = due.channel
        now = self.clock()
        connector = self.providers.connectors.get(channel.connector_type)
        source = None
        if channel.expires_at > now and isinstance(connector, PushConnector):
            source = await self._stop_source(due)
        if source is None or not isinstance(connector, PushConnector):
            # Expired (nothing left to stop) or nothing can authorise the stop: it ends by
            # itself at its expiration, and notifications for it are ignored meanwhile.
            await self._forget(due, "expired" if channel.expires_at <= now else "no credentials")
            return
        try:
            with purpose("push"):
                known = await connector.stop_channel(
                    source, channel.channel_id, channel.resource_id
                )
        except ProviderFailure as failure:
            if due.orphan_credentials is not None and failure.code in LET_GO_REFUSALS:
                # The credentials it was opened with were let go of, and the provider no
                # longer takes them (revoked with the old account, say): nothing ever will.
                await self._forget(due, "credentials refused")
                return
            await self._stop_failed(due, failure, now)
            return
        except Exception as exc:
            await self._stop_failed(due, exc, now)
            return
        async with self.db.transaction() as tx:
            await tx.channels.stopped(channel.tenant_id, channel.channel_id)
        log.info("push_channel_stopped", known=known, **_where(channel))

    async def _forget(self, due: StopDue, why: str) -> None:
        """Forget a channel that cannot be stopped: it ends by itself at its expiration."""
        channel = due.channel
        async with self.db.transaction() as tx:
            await tx.channels.stopped(channel.tenant_id, channel.channel_id)
        log.info(
            "push_channel_forgotten",
            why=why,
            expires_at=channel.expires_at.isoformat(),
            **_where(channel),
        )

    async def _stop_failed(self, due: StopDue, exc: Exception, now: datetime) -> None:
        """A stop that may work later: tried again, backing off."""
        channel = due.channel
        delay = min(STOP_RETRY * 2 ** max(due.attempts - 1, 0), STOP_RETRY_MAX)
        async with self.db.transaction() as tx:
            await tx.channels.stop_failed(channel.tenant_id, channel.channel_id, now + delay)
        log.warning(
            "push_channel_stop_failed", error=str(exc), retry_in=str(delay), **_where(channel)
        )

    async def _stop_source(self, due: StopDue) -> Source | None:
        """What authorises the stop: the credentials the channel was opened with. While the
        integration still has them, its own (its refresher renews them); once it let go of
        them (a Delete, a Reauthorize: at Google only the account that opened a channel can
        stop it), the copy kept for the stop (renewed, never stored). None: nothing can."""
        channel = due.channel
        async with self.db.connection() as tx:
            try:
                integration = await tx.integrations.get(channel.tenant_id, channel.integration_id)
            except NotFound:
                integration = None
        if integration is not None and integration.credentials_set_at == channel.credentials_set_at:
            _, source = await self.providers.open(integration.replace(config=channel.config))
            return source
        if due.orphan_credentials is None:
            return None
        return Source(
            config=channel.config,
            credentials=due.orphan_credentials,
            http=self.providers.http,
            tokens=self._orphan_tokens(channel, due.orphan_credentials),
            page_size=self.providers.page_size,
            offload=self.providers.offload,
        )

    def _orphan_tokens(self, channel: Channel, credentials: Credentials) -> AccessTokens:
        if not tokens.refresh_token_of(credentials):
            return StoredTokens(credentials)
        try:
            endpoints = self.oauth.endpoints(
                self.providers.connectors.get(channel.connector_type), channel.config
            )
        except FailedPrecondition:
            return StoredTokens(credentials)
        return UnstoredTokens(credentials, self.token_endpoint, endpoints, self.clock)


def _where(channel: Channel) -> dict[str, str]:
    return {
        "tenant_id": channel.tenant_id,
        "integration_id": str(channel.integration_id),
        "channel_id": channel.channel_id,
    }
