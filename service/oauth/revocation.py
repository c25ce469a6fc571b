"""Revoking tokens at the provider (RFC 7009) when the service lets go of them.

Tokens the service no longer uses should not stay valid at the provider: on Delete, and when a
Reauthorize replaces one account's credentials with another account's, the old refresh token
is revoked (revoking it revokes the access tokens it issued). Not when a Reauthorize signs in
to the same account again: at Google a revocation revokes the whole grant of that account to
our client, which would include the new tokens.

Revocation is best effort and in the background: it never delays or fails the Delete or the
Reauthorize that caused it (the credentials are already gone from our side), and its outcome
is only logged — never the token.
"""

from __future__ import annotations

import asyncio

import structlog

from service.connectors.provider_failures import ProviderFailure
from service.connectors.registry import ConnectorRegistry
from service.domain.credentials import Credentials
from service.domain.exceptions import FailedPrecondition
from service.domain.model import Integration
from service.oauth import tokens
from service.oauth.providers import OAuthSetup
from service.oauth.token_endpoint import TokenEndpoint

log = structlog.get_logger(__name__)


class Revoker:
    """Revokes let-go tokens in background tasks of this process."""

    def __init__(
        self, endpoint: TokenEndpoint, setup: OAuthSetup, connectors: ConnectorRegistry
    ) -> None:
        self.endpoint = endpoint
        self.setup = setup
        self.connectors = connectors
        self._tasks: set[asyncio.Task[None]] = set()

    def revoke_later(self, integration: Integration, credentials: Credentials, why: str) -> None:
        """Revoke `credentials` (the integration's former OAuth tokens) in the background."""
        token = tokens.refresh_token_of(credentials) or (
            tokens.access_token_of(credentials) if credentials.kind == "oauth" else ""
        )
        if not token:
            return
        try:
            endpoints = self.setup.endpoints(
                self.connectors.get(integration.connector_type), integration.config
            )
        except FailedPrecondition:
            return  # no OAuth client here (or an untrusted endpoint): nothing we may call
        if not endpoints.revocation_url:
            return
        hint = "refresh_token" if tokens.refresh_token_of(credentials) else "access_token"
        where = {
            "tenant_id": integration.tenant_id,
            "integration_id": str(integration.id),
            "why": why,
        }

        async def revoke() -> None:
            try:
                await self.endpoint.revoke(endpoints, token, hint)
            except ProviderFailure as failure:
                log.warning("token_not_revoked", code=failure.code.value, **where)
            else:
                log.info("token_revoked", **where)

        task = asyncio.create_task(revoke(), name=f"revoke-{integration.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self, timeout: float) -> None:
        """Let revocations in flight finish (each is bounded by the provider timeout)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
