"""Token refresh against the sandbox's rotating refresh tokens and a real PostgreSQL: before use
and on a 401, single-flight in a process and across refreshers sharing the database (replicas),
rotated tokens stored before use, lost races told apart from revoked credentials."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox
from service.app import App
from service.connectors.auth import StoredTokens
from service.connectors.provider_failures import ProviderFailure
from service.domain.credentials import Credentials
from service.domain.model import Integration
from service.domain.taxonomy import ErrorCode
from service.engine.lifecycle_specs import ConfigureSpec, CreateSpec
from service.oauth.providers import OAuthClient, OAuthSetup
from service.oauth.refresh import RefreshingTokens, TokenRefresher
from service.oauth.token_endpoint import TokenEndpoint
from tests.support.oauth import (
    CLIENT_ID,
    CLIENT_SECRET,
    SAFETY,
    advisory_lock_waiters,
    calendar_config,
    sandbox_tokens,
    until,
)
from tests.support.storage import credentials_of

TENANT = "default"


pytestmark = pytest.mark.settings(allow_private_networks=True)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        sandbox.state.google.add_calendar("team", "Team")
        yield sandbox


def refresher_of(app: App, sb: Sandbox, **setup: Any) -> TokenRefresher:
    """A refresher like a replica's: its own single-flight, the shared database."""
    oauth = OAuthSetup(
        setup.get("clients", {"google": OAuthClient(CLIENT_ID, CLIENT_SECRET)}),
        setup.get("trusted", [sb.url]),
    )
    return TokenRefresher(
        app.db,
        TokenEndpoint(app.providers.http),
        oauth,
        app.connectors,
        app.clock,
        lock_wait=timedelta(seconds=SAFETY),
    )


@pytest.fixture
def refresher(app: App, sb: Sandbox) -> TokenRefresher:
    return refresher_of(app, sb)


def oauth(tokens: dict[str, Any], expires_at: str | None) -> Credentials:
    return Credentials(
        "oauth",
        {
            "access_token": tokens["access_token"],
            "refresh_token": tokens["refresh_token"],
            "expires_at": expires_at,
        },
    )


async def calendar(
    app: App, sb: Sandbox, credentials: Credentials, config: dict[str, Any] | None = None
) -> Integration:
    return await app.lifecycle.create(
        TENANT,
        CreateSpec(
            "Team calendar",
            "google_calendar",
            config=config or calendar_config(sb),
            credentials=credentials,
        ),
    )


async def stored(app: App, integration: Integration) -> Credentials:
    found = await credentials_of(app, TENANT, integration.id)
    assert found is not None
    return found


async def tokens_of(
    refresher: TokenRefresher, integration: Integration, credentials: Credentials
) -> RefreshingTokens:
    tokens = await refresher.tokens_for(integration, credentials)
    assert isinstance(tokens, RefreshingTokens)
    return tokens


class Refreshes:
    """`integrations_token_refreshes_total` by outcome, counted from when this was made."""

    OUTCOMES = ("ok", "failed", "lost_race")

    def __init__(self) -> None:
        self._start = self._now()

    @classmethod
    def _now(cls) -> dict[str, float]:
        return {
            o: REGISTRY.get_sample_value("integrations_token_refreshes_total", {"outcome": o})
            or 0.0
            for o in cls.OUTCOMES
        }

    def since(self) -> dict[str, float]:
        now = self._now()
        return {o: now[o] - self._start[o] for o in self.OUTCOMES if now[o] != self._start[o]}


def hold_token_endpoint(sb: Sandbox, gate: str = "idp") -> None:
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.SLOW, gate=gate), resource="token", times=None)


async def test_an_expired_token_is_refreshed_before_use_and_the_rotation_stored(
    app: App, sb: Sandbox, refresher: TokenRefresher, capsys: pytest.CaptureFixture[str]
) -> None:
    first = await sandbox_tokens(sb)
    expired = (app.clock() - timedelta(minutes=5)).isoformat()
    integration = await calendar(app, sb, oauth(first, expired))
    refreshes = Refreshes()

    token = await (await tokens_of(refresher, integration, oauth(first, expired))).current()
    assert refreshes.since() == {"ok": 1}

    assert token not in (None, first["access_token"])
    assert sb.state.oauth.access_token(str(token)) is not None
    assert sb.state.oauth.token_calls == {"refresh_token": 1}
    now_stored = await stored(app, integration)
    assert now_stored.secret["access_token"] == token
    assert now_stored.secret["refresh_token"] not in ("", first["refresh_token"])
    assert now_stored.secret["expires_at"] == (app.clock() + timedelta(hours=1)).isoformat()
    async with app.db.raw() as conn:  # sealed at rest, like every credential
        sealed = bytes(await conn.fetchval("SELECT sealed FROM credentials"))
    for secret in (token, now_stored.secret["refresh_token"]):
        assert str(secret).encode() not in sealed
    # A caller still holding the old credentials uses the stored token: no second call.
    again = await (await tokens_of(refresher, integration, oauth(first, expired))).current()
    assert again == token
    assert sb.state.oauth.token_calls_total == 1
    assert refreshes.since() == {"ok": 1, "lost_race": 1}
    # Fresh credentials are not refreshed at all.
    assert await (await tokens_of(refresher, integration, now_stored)).current() == token
    assert sb.state.oauth.token_calls_total == 1
    logged = capsys.readouterr()
    for secret in (
        first["access_token"],
        first["refresh_token"],
        token,
        now_stored.secret["refresh_token"],
    ):
        assert str(secret) not in logged.out + logged.err


async def test_a_rejected_token_is_renewed_once(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))  # expiry unknown: a 401 tells
    held = oauth(first, None)

    assert await (await tokens_of(refresher, integration, held)).current() == first["access_token"]
    renewed = await (await tokens_of(refresher, integration, held)).renew(first["access_token"])
    assert renewed not in (None, first["access_token"])
    # Another request rejected with the same old token gets the renewed one, no new call.
    assert (
        await (await tokens_of(refresher, integration, held)).renew(first["access_token"])
        == renewed
    )
    assert sb.state.oauth.token_calls == {"refresh_token": 1}


async def test_concurrent_callers_in_one_process_share_one_refresh(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))
    hold_token_endpoint(sb)
    callers = [await tokens_of(refresher, integration, oauth(first, None)) for _ in range(100)]
    refreshes = Refreshes()
    renewals = [asyncio.create_task(c.renew(first["access_token"])) for c in callers]
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(1), SAFETY)
    gate.open()
    results = await asyncio.wait_for(asyncio.gather(*renewals), SAFETY)

    assert len(set(results)) == 1 and results[0] != first["access_token"]
    assert gate.arrived == 1
    assert sb.state.oauth.token_calls == {"refresh_token": 1}
    assert refreshes.since() == {"ok": 1}  # one shared refresh: nobody raced


async def test_replicas_take_turns_and_the_second_uses_the_first_ones_token(
    app: App, sb: Sandbox, database_url: str
) -> None:
    first = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))
    replica_a, replica_b = refresher_of(app, sb), refresher_of(app, sb)
    hold_token_endpoint(sb)
    refreshes = Refreshes()

    a = asyncio.create_task(
        (await tokens_of(replica_a, integration, oauth(first, None))).renew(first["access_token"])
    )
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(1), SAFETY)  # A holds the lock, at the provider
    b = asyncio.create_task(
        (await tokens_of(replica_b, integration, oauth(first, None))).renew(first["access_token"])
    )

    async def b_waits_for_the_lock() -> bool:
        return await advisory_lock_waiters(database_url) == 1

    await until(b_waits_for_the_lock, "replica B to wait for the refresh lock")
    gate.open()
    token_a, token_b = await asyncio.wait_for(asyncio.gather(a, b), SAFETY)

    assert token_a == token_b != first["access_token"]
    assert sb.state.oauth.token_calls == {"refresh_token": 1}  # and so no invalid_grant
    # B found A's token once it held the lock: A refreshed, B lost the race.
    assert refreshes.since() == {"ok": 1, "lost_race": 1}


async def test_a_truly_rejected_refresh_token_is_invalid_credentials(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    expired = (app.clock() - timedelta(minutes=1)).isoformat()
    integration = await calendar(app, sb, oauth(first, expired))
    sb.state.oauth.revoke_all()  # e.g. the person revoked our access at the provider
    refreshes = Refreshes()

    with pytest.raises(ProviderFailure) as caught:
        await (await tokens_of(refresher, integration, oauth(first, expired))).current()
    assert caught.value.code is ErrorCode.INVALID_CREDENTIALS
    assert (await stored(app, integration)).secret["refresh_token"] == first["refresh_token"]
    assert refreshes.since() == {"failed": 1}


async def test_invalid_grant_after_a_reauthorize_is_a_lost_race_not_a_revocation(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    second = await sandbox_tokens(sb)  # the person's next sign-in, below
    integration = await calendar(app, sb, oauth(first, None))
    hold_token_endpoint(sb)
    renewal = asyncio.create_task(
        (await tokens_of(refresher, integration, oauth(first, None))).renew(first["access_token"])
    )
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(1), SAFETY)

    # While our refresh is at the provider, the person signs in again (new credentials are
    # stored; a Reauthorize never waits for a refresh) and the provider revokes the old grant.
    await app.lifecycle.configure(
        TENANT, integration.id, "", ConfigureSpec(credentials=oauth(second, None))
    )
    sb.state.oauth.revoke(first["refresh_token"])
    refreshes = Refreshes()
    gate.open()

    assert await asyncio.wait_for(renewal, SAFETY) == second["access_token"]
    assert sb.state.oauth.token_calls == {"refresh_token": 1}
    assert refreshes.since() == {"lost_race": 1}
    assert (await stored(app, integration)).secret == oauth(second, None).secret


async def test_credentials_stored_during_a_refresh_win_over_its_answer(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    second = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))
    hold_token_endpoint(sb)
    renewal = asyncio.create_task(
        (await tokens_of(refresher, integration, oauth(first, None))).renew(first["access_token"])
    )
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(1), SAFETY)
    await app.lifecycle.configure(
        TENANT, integration.id, "", ConfigureSpec(credentials=oauth(second, None))
    )
    refreshes = Refreshes()
    gate.open()

    assert await asyncio.wait_for(renewal, SAFETY) == second["access_token"]
    assert (await stored(app, integration)).secret == oauth(second, None).secret
    assert refreshes.since() == {"lost_race": 1}  # the reauthorization won over our answer


async def test_a_rekey_during_a_refresh_does_not_lose_the_rotated_token(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))
    hold_token_endpoint(sb)
    renewal = asyncio.create_task(
        (await tokens_of(refresher, integration, oauth(first, None))).renew(first["access_token"])
    )
    gate = sb.state.gates["idp"]
    await asyncio.wait_for(gate.wait_for(1), SAFETY)
    # The same credentials sealed afresh (what `service.rekey` does): the bytes change.
    async with app.db.connection() as tx:
        await tx.credentials.put(TENANT, integration.id, oauth(first, None), app.clock())
    gate.open()

    token = await asyncio.wait_for(renewal, SAFETY)
    now_stored = await stored(app, integration)
    assert now_stored.secret["access_token"] == token != first["access_token"]
    assert now_stored.secret["refresh_token"] != first["refresh_token"]


async def test_what_cannot_or_may_not_be_refreshed(app: App, sb: Sandbox) -> None:
    first = await sandbox_tokens(sb)
    expired = (app.clock() - timedelta(minutes=1)).isoformat()
    integration = await calendar(app, sb, oauth(first, expired))
    credentials = oauth(first, expired)

    # No OAuth client in this deployment, no refresh token, or not OAuth: the stored token.
    no_client = refresher_of(app, sb, clients={})
    assert isinstance(await no_client.tokens_for(integration, credentials), StoredTokens)
    bare = Credentials("oauth", {**credentials.secret, "refresh_token": ""})
    assert isinstance(await refresher_of(app, sb).tokens_for(integration, bare), StoredTokens)
    bearer = Credentials("bearer_token", {"token": "t"})
    assert isinstance(await refresher_of(app, sb).tokens_for(integration, bearer), StoredTokens)

    # A token URL the deployment does not trust never receives the client secret.
    untrusting = refresher_of(app, sb, trusted=[])
    tokens = await untrusting.tokens_for(integration, credentials)
    with pytest.raises(ProviderFailure) as caught:
        await tokens.current()
    # The person's setting (or the operator's trust list) must change: not a ticket.
    assert caught.value.code is ErrorCode.RESOURCE_NOT_FOUND
    assert "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS" in caught.value.message
    assert sb.state.oauth.token_calls_total == 0


async def test_a_deleted_integration_cannot_be_refreshed(
    app: App, sb: Sandbox, refresher: TokenRefresher
) -> None:
    first = await sandbox_tokens(sb)
    integration = await calendar(app, sb, oauth(first, None))
    tokens = await tokens_of(refresher, integration, oauth(first, None))
    async with app.db.transaction() as tx:
        await tx.integrations.delete(TENANT, integration.id)
    assert await tokens.renew(first["access_token"]) is None
    assert sb.state.oauth.token_calls_total == 0
