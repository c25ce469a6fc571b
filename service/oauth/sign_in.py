"""Sign-ins in flight: started by Reauthorize, completed by the callback on any replica.

A sign-in is a one-time `state` (the browser carries it through the provider) and a PKCE
verifier (sealed in the database until the code exchange). `start` builds the consent URL;
`take` consumes a sign-in exactly once, whichever replica the browser returns to.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from yarl import URL

from service.clock import Clock
from service.domain.credentials import SignIn
from service.domain.model import Integration
from service.oauth import pkce
from service.oauth.providers import Endpoints
from service.storage.database import Database


@dataclass(frozen=True)
class Started:
    """A sign-in waiting for the person: where to send them, and until when it works."""

    authorization_url: str
    expires_at: datetime


class SignIns:
    """Starts and takes sign-ins (stored in PostgreSQL, the verifier sealed there)."""

    def __init__(self, db: Database, clock: Clock, ttl: timedelta) -> None:
        self.db = db
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
        challenge = pkce.new_pkce()
        now = self.clock()
        asked = tuple(scopes) or endpoints.provider.default_scopes
        sign_in = SignIn(
            tenant_id=integration.tenant_id,
            integration_id=integration.id,
            provider=endpoints.provider.name,
            verifier=challenge.verifier,
            redirect_uri=redirect_uri,
            return_url=return_url,
            scopes=asked,
            created_at=now,
            expires_at=now + self.ttl,
        )
        async with self.db.transaction() as tx:
            await tx.sign_ins.insert(pkce.state_digest(state), sign_in)
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
        return Started(str(url), sign_in.expires_at)

    async def take(self, state: str) -> SignIn | None:
        """The sign-in of `state`, consumed (a second take of the same state finds nothing);
        None for a state this service never made, already used, or whose integration was
        deleted. An expired sign-in is returned (and consumed): the caller says so."""
        parsed = pkce.parse_state(state)
        if parsed is None:
            return None
        tenant_id, digest = parsed
        async with self.db.connection() as tx:
            return await tx.sign_ins.take(tenant_id, digest)
