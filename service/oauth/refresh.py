"""Silent token refresh, at most one per integration in flight across every replica.

A connector asks its `AccessTokens` for a token before each request and for a renewed one
after a 401. For OAuth credentials with a refresh token those are `RefreshingTokens`, which go
to the `TokenRefresher` when the token is expired (or about to be) or was rejected:

1. In this process, callers for the same integration share one refresh task (it saves
   database connections; it is not what makes refreshes unique).
2. The task takes the integration's refresh lock in PostgreSQL (a transaction-scoped advisory
   lock), so one replica refreshes while the others wait for it, and re-reads the credentials
   once it holds the lock: if another caller refreshed meanwhile, its token is used and the
   provider is not called again.
3. Otherwise it calls the token endpoint with the stored refresh token while holding the lock,
   and stores the answer (sealed, the rotated refresh token included) with a compare-and-set
   against the value it read, then commits, all before the new access token is handed to
   anyone. A refresh token that is lost after the provider rotated it would lock the
   integration out, so nothing may use the new access token before it is durable.
4. `invalid_grant` does not by itself mean the credentials are dead: the row is re-read, and
   if its refresh token changed since we read it (a Reauthorize, which never waits for this
   lock, stored new credentials meanwhile) we lost a race and use the new credentials. Only a
   refresh token that is still the stored one and still rejected is INVALID_CREDENTIALS
   (the integration is then DISCONNECTED by whoever classifies the failure).

The refresh task is shielded from its callers' cancellation: an RPC that gives up must not
abort a refresh between the provider's rotation and our commit.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from uuid import UUID

import structlog

from service.clock import Clock
from service.connectors.auth import AccessTokens, StoredTokens
from service.connectors.provider_failures import ProviderFailure, unavailable
from service.connectors.registry import ConnectorRegistry
from service.domain.credentials import Credentials
from service.domain.exceptions import FailedPrecondition
from service.domain.model import Integration
from service.domain.taxonomy import ErrorCode
from service.oauth import tokens
from service.oauth.providers import Endpoints, OAuthSetup
from service.oauth.token_endpoint import TokenEndpoint
from service.observability import metrics
from service.storage.credentials import StoredCredentials
from service.storage.database import Database, Tx
from service.storage.errors import LockTimeout

log = structlog.get_logger(__name__)

_Key = tuple[str, UUID]


class TokenRefresher:
    """Refreshes integrations' OAuth2 access tokens; see the module docstring."""

    def __init__(
        self,
        db: Database,
        endpoint: TokenEndpoint,
        setup: OAuthSetup,
        connectors: ConnectorRegistry,
        clock: Clock,
        *,
        lock_wait: timedelta,
        max_concurrent: int = 4,
    ) -> None:
        self.db = db
        self.endpoint = endpoint
        self.setup = setup
        self.connectors = connectors
        self.clock = clock
        #: How long a refresh waits for another replica's refresh of the same integration.
        self.lock_wait = lock_wait
        self._inflight: dict[_Key, asyncio.Task[Credentials | None]] = {}
        # A refresh holds a database connection while it waits for the provider; capping
        # them leaves the rest of the pool to everything else when a provider is slow.
        self._slots = asyncio.Semaphore(max_concurrent)

    async def tokens_for(
        self, integration: Integration, credentials: Credentials | None
    ) -> AccessTokens:
        """The `AccessTokens` a connector uses for this integration (the engine's
        TokensFactory): refreshing ones for OAuth credentials this deployment can refresh,
        the stored ones otherwise (a rejected token is then TOKEN_EXPIRED)."""
        if credentials is None or not tokens.refresh_token_of(credentials):
            return StoredTokens(credentials)
        try:
            endpoints = self.setup.endpoints(
                self.connectors.get(integration.connector_type), integration.config
            )
        except FailedPrecondition as refused:
            if refused.reason != "OAUTH_ENDPOINT_NOT_TRUSTED":
                return StoredTokens(credentials)  # no OAuth client here: cannot refresh
            # The integration's token_url override is not trusted here: a setting the person
            # (or the operator's trust list) must change, not a malfunction to raise a ticket for.
            return RefreshingTokens(
                self,
                integration.tenant_id,
                integration.id,
                credentials,
                ProviderFailure(
                    ErrorCode.RESOURCE_NOT_FOUND, refused.message, context=dict(refused.metadata)
                ),
            )
        return RefreshingTokens(self, integration.tenant_id, integration.id, credentials, endpoints)

    async def renewed(
        self, tenant_id: str, integration_id: UUID, endpoints: Endpoints, stale: str
    ) -> Credentials | None:
        """Credentials whose access token is not `stale` (the one expired or rejected),
        refreshed at most once across replicas; None when they cannot be renewed (no refresh
        token, no longer OAuth, deleted). Raises ProviderFailure when refreshing fails."""
        key = (tenant_id, integration_id)
        result: Credentials | None = None
        # A refresh already in flight may have started from an older token than ours and find
        # ours current; then one more round refreshes ours.
        for _ in range(2):
            task = self._inflight.get(key)
            if task is None or task.done():
                task = asyncio.create_task(self._refresh(key, endpoints, stale))
                self._inflight[key] = task
                task.add_done_callback(functools.partial(self._forget, key))
            result = await asyncio.shield(task)
            if result is None or tokens.access_token_of(result) != stale:
                return result
        return result

    async def close(self) -> None:
        """Let refreshes in flight finish (each is bounded by the token endpoint's timeout),
        so none is cut between the provider's rotation and our commit."""
        pending = [t for t in self._inflight.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)

    def _forget(self, key: _Key, task: asyncio.Task[Credentials | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            # Retrieve the outcome, so a failure whose callers all gave up is not reported
            # as "never retrieved"; the callers that waited got it already.
            task.exception()

    async def _refresh(self, key: _Key, endpoints: Endpoints, stale: str) -> Credentials | None:
        tenant_id, integration_id = key
        where = {"tenant_id": tenant_id, "integration_id": str(integration_id)}
        async with self._slots, self.db.transaction() as tx:
            try:
                await tx.credentials.lock_for_refresh(tenant_id, integration_id, self.lock_wait)
            except LockTimeout:
                raise unavailable(
                    "another refresh of this integration's access token is taking too long", **where
                ) from None
            row = await tx.credentials.get(*key)
            if row is None or row.credentials.kind != "oauth":
                return None
            current = row.credentials
            if tokens.access_token_of(current) != stale and not tokens.needs_refresh(
                current, self.clock()
            ):
                # A lost race too: another caller (here or on another replica) refreshed
                # while this one waited for the lock, and its token is used.
                log.debug("token_refreshed_elsewhere", **where)
                metrics.TOKEN_REFRESHES.labels("lost_race").inc()
                return current
            refresh_token = tokens.refresh_token_of(current)
            if not refresh_token:
                return None
            try:
                grant = await self.endpoint.refresh(endpoints, refresh_token)
            except ProviderFailure as failure:
                if failure.code is ErrorCode.INVALID_CREDENTIALS:
                    latest = await tx.credentials.get(*key)
                    if (
                        latest is not None
                        and tokens.refresh_token_of(latest.credentials) != refresh_token
                    ):
                        log.info("token_refresh_lost_race", **where)
                        metrics.TOKEN_REFRESHES.labels("lost_race").inc()
                        return latest.credentials
                log.info("token_refresh_failed", code=failure.code.value, **where)
                metrics.TOKEN_REFRESHES.labels("failed").inc()
                raise
            renewed = tokens.from_grant(grant, self.clock(), current)
            stored = await self._store(tx, key, row, renewed, refresh_token)
        # Committed: the rotated refresh token is durable before the access token is used.
        # Credentials stored meanwhile (a Reauthorize) won over this answer: a lost race.
        metrics.TOKEN_REFRESHES.labels("ok" if stored is renewed else "lost_race").inc()
        log.info(
            "token_refreshed",
            rotated=grant.refresh_token is not None,
            saved=stored is renewed,
            **where,
        )
        return stored

    async def _store(
        self,
        tx: Tx,
        key: _Key,
        row: StoredCredentials,
        renewed: Credentials,
        refresh_token: str,
    ) -> Credentials | None:
        """Compare-and-set the refreshed credentials over `row`. When the row changed, a
        re-key (same tokens, new sealing) is written over; a Reauthorize's new tokens win."""
        expected = row
        for _ in range(3):
            if await tx.credentials.swap(*key, expected, renewed):
                return renewed
            latest = await tx.credentials.get(*key)
            if latest is None:
                return None
            if tokens.refresh_token_of(latest.credentials) != refresh_token:
                log.info("token_refresh_superseded", tenant_id=key[0], integration_id=str(key[1]))
                return latest.credentials
            expected = latest
        raise unavailable(
            "the credentials kept changing while their access token was refreshed",
            tenant_id=key[0],
            integration_id=str(key[1]),
        )


class RefreshingTokens:
    """The `AccessTokens` of one integration with refreshable OAuth credentials."""

    def __init__(
        self,
        refresher: TokenRefresher,
        tenant_id: str,
        integration_id: UUID,
        credentials: Credentials,
        endpoints: Endpoints | ProviderFailure,
    ) -> None:
        self._refresher = refresher
        self._tenant_id = tenant_id
        self._integration_id = integration_id
        self._credentials = credentials
        #: Where to refresh, or why this deployment may not (raised when a refresh is needed).
        self._endpoints = endpoints

    async def current(self) -> str | None:
        """The access token, refreshed first when it is missing or about to expire."""
        token = tokens.access_token_of(self._credentials)
        if tokens.needs_refresh(self._credentials, self._refresher.clock()):
            renewed = await self._renew(token)
            if renewed is not None:
                return renewed
        return token or None

    async def renew(self, rejected: str) -> str | None:
        """A token other than `rejected`, refreshing when nobody has yet; None when the
        credentials cannot be renewed."""
        return await self._renew(rejected)

    async def _renew(self, stale: str) -> str | None:
        if isinstance(self._endpoints, ProviderFailure):
            raise self._endpoints
        renewed = await self._refresher.renewed(
            self._tenant_id, self._integration_id, self._endpoints, stale
        )
        if renewed is None:
            return None
        self._credentials = renewed
        token = tokens.access_token_of(renewed)
        return token if token and token != stale else None


class UnstoredTokens:
    """The access tokens of a deleted integration (its push channel is still to be stopped):
    refreshed when expired or rejected, and never stored (there is nowhere left to store
    them), so no lock and no TokenRefresher."""

    def __init__(
        self,
        credentials: Credentials,
        endpoint: TokenEndpoint,
        endpoints: Endpoints,
        clock: Clock,
    ) -> None:
        self._credentials = credentials
        self._endpoint = endpoint
        self._endpoints = endpoints
        self._clock = clock

    async def current(self) -> str | None:
        token = tokens.access_token_of(self._credentials)
        if tokens.needs_refresh(self._credentials, self._clock()):
            return await self.renew(token)
        return token or None

    async def renew(self, rejected: str) -> str | None:
        grant = await self._endpoint.refresh(
            self._endpoints, tokens.refresh_token_of(self._credentials)
        )
        self._credentials = tokens.from_grant(grant, self._clock(), self._credentials)
        return grant.access_token
