"""Sign-ins in flight: started by Reauthorize, completed by the callback on any replica.

A sign-in is a one-time `state` (the browser carries it through the provider) and a PKCE
verifier (sealed in the database until the code exchange). `start` builds the consent URL;
`take` consumes a sign-in exactly once, whichever replica the browser returns to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from uuid import UUID

from yarl import URL

from service.clock import Clock
from service.domain.model import Integration
from service.oauth import pkce
from service.oauth.providers import Endpoints
from service.storage import oauth as store
from service.storage.database import Database
from service.storage.sealing import KeyRing, row_binding


@dataclass(frozen=True)
class SignIn:
    """A sign-in taken by its callback."""

    tenant_id: str
    integration_id: UUID
    provider: str
    verifier: str = field(repr=False)
    redirect_uri: str
    return_url: str
    scopes: tuple[str, ...]
    expires_at: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires_at


@dataclass(frozen=True)
class Started:
    """A sign-in waiting for the person: where to send them, and until when it works."""

    authorization_url: str
    expires_at: datetime


class SignIns:
    """Starts and takes sign-ins (stored in PostgreSQL)."""

    def __init__(self, db: Database, keys: KeyRing, clock: Clock, ttl: timedelta) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        #: How long a started sign-in can be completed.
        self.ttl = ttl

    async def start(
        self,
        integration: Integration,
        endpoints: Endpoints,
        *,
        redirect_uri: str,
        return_url: str,
        scopes: Sequence[str],
    ) -> Started:
        """Remember a new sign-in for `integration` and return the consent page's URL."""
        state = pkce.new_state(integration.tenant_id)
        digest = pkce.state_digest(state)
        challenge = pkce.new_pkce()
        now = self.clock()
        asked = tuple(scopes) or endpoints.provider.default_scopes
        sealed = self.keys.seal(
            challenge.verifier.encode(), _binding(integration.tenant_id, integration.id, digest)
        )
        async with self.db.transaction() as conn:
            await store.insert_sign_in(
                conn,
                digest,
                store.StoredSignIn(
                    tenant_id=integration.tenant_id,
                    integration_id=integration.id,
                    provider=endpoints.provider.name,
                    verifier_sealed=sealed,
                    redirect_uri=redirect_uri,
                    return_url=return_url,
                    scopes=asked,
                    created_at=now,
                    expires_at=now + self.ttl,
                ),
            )
        url = URL(endpoints.authorization_url).update_query(
            {
                **dict(endpoints.provider.authorization_params),
                "response_type": "code",
                "client_id": endpoints.client.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(asked),
                "state": state,
                "code_challenge": challenge.challenge,
                "code_challenge_method": challenge.method,
            }
        )
        return Started(str(url), now + self.ttl)

    async def take(self, state: str) -> SignIn | None:
        """The sign-in of `state`, consumed (a second take of the same state finds nothing);
        None for a state this service never made, already used, or whose integration was
        deleted. An expired sign-in is returned (and consumed): the caller says so."""
        parsed = pkce.parse_state(state)
        if parsed is None:
            return None
        tenant_id, digest = parsed
        async with self.db.connection() as conn:
            stored = await store.take_sign_in(conn, tenant_id, digest)
        if stored is None:
            return None
        verifier = self.keys.open(
            stored.verifier_sealed, _binding(tenant_id, stored.integration_id, digest)
        )
        return SignIn(
            tenant_id=tenant_id,
            integration_id=stored.integration_id,
            provider=stored.provider,
            verifier=verifier.decode(),
            redirect_uri=stored.redirect_uri,
            return_url=stored.return_url,
            scopes=stored.scopes,
            expires_at=stored.expires_at,
        )


def _binding(tenant_id: str, integration_id: UUID, digest: bytes) -> bytes:
    # Not the credentials' binding: a sealed verifier must not open as credentials, nor as
    # another sign-in's verifier.
    return row_binding(tenant_id, integration_id) + b"/oauth-sign-in/" + digest.hex().encode()
