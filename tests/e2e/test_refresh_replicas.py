"""Three service processes share one database and one expired OAuth access token: 200
concurrent connection tests spread over them cause exactly one call to the token endpoint and
no invalid_grant (the provider's refresh tokens are single-use and a reused one revokes the
whole family, so a second refresh anywhere would show).

Nothing is timed: the token endpoint holds the one refresh on a sandbox gate until every caller
has been turned away with the expired token and the two other replicas are seen waiting for
the refresh lock in PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import AsyncIterator

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox
from tests.support.oauth import (
    SAFETY,
    advisory_lock_waiters,
    calendar_config,
    replica_processes,
    running_sandbox,
    sandbox_tokens,
    until,
)
from tests.support.process import ServiceProcess
from tests.support.rpc import Stub

CALLERS = 200
REPLICAS = 3


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def replicas(database_url: str, sb: Sandbox) -> AsyncIterator[list[ServiceProcess]]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    async with replica_processes(REPLICAS, database_url, sb, key) as processes:
        yield processes


async def test_200_callers_on_3_replicas_share_one_refresh(
    replicas: list[ServiceProcess], sb: Sandbox, database_url: str
) -> None:
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p.port}") for p in replicas]
    stubs = [Stub(c) for c in channels]
    try:
        tokens = await sandbox_tokens(sb)
        integration = (
            await stubs[0].Create(
                api.CreateRequest(
                    display_name="Team calendar",
                    connector_type="google_calendar",
                    config=pb.ConnectorConfig(
                        google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb))
                    ),
                    credentials=pb.Credentials(
                        oauth=pb.OAuthTokens(
                            access_token=tokens["access_token"],
                            refresh_token=tokens["refresh_token"],
                        )
                    ),
                )
            )
        ).integration
        assert integration.status == pb.STATUS_ACTIVE

        # The access token expires (the service does not know when: the provider's 401 says
        # so); the token endpoint holds whatever reaches it.
        sb.state.oauth.expire_access_tokens()
        sb.state.oauth.token_calls.clear()
        sb.state.log.clear()
        sb.state.inject(
            Provider.OAUTH, Fault(FaultKind.SLOW, gate="idp"), resource="token", times=None
        )
        gate = sb.state.gates["idp"]

        async def caller(stub: Stub) -> api.TestConnectionResponse:
            return await stub.TestConnection(
                api.TestConnectionRequest(id=integration.id), timeout=SAFETY * 3
            )

        calls = [asyncio.create_task(caller(stubs[i % REPLICAS])) for i in range(CALLERS)]

        await asyncio.wait_for(gate.wait_for(1), SAFETY)

        async def every_caller_was_turned_away() -> bool:
            return (
                sum(1 for e in sb.state.log.entries(provider=Provider.GOOGLE) if e.status == 401)
                == CALLERS
            )

        async def the_other_replicas_wait_their_turn() -> bool:
            return await advisory_lock_waiters(database_url) == REPLICAS - 1

        await until(every_caller_was_turned_away, "every caller's 401")
        await until(the_other_replicas_wait_their_turn, "two replicas waiting for the lock")
        assert sb.state.oauth.token_calls_total == 0  # the one refresh is still held
        gate.open()
        results = await asyncio.wait_for(asyncio.gather(*calls), SAFETY * 3)

        assert [r.error.code for r in results if not r.ok] == []
        assert sb.state.oauth.token_calls == {"refresh_token": 1}
        assert gate.arrived == 1
        # No invalid_grant anywhere: the family is alive and the stored token works.
        after = await stubs[2].TestConnection(api.TestConnectionRequest(id=integration.id))
        assert after.ok and after.integration.status == pb.STATUS_ACTIVE
        assert sb.state.oauth.token_calls_total == 1
        refreshed = [e for p in replicas for e in p.events("token_refreshed")]
        assert len(refreshed) == 1
        assert not [e for p in replicas for e in p.events("token_refresh_failed")]
    finally:
        for channel in channels:
            await channel.close()
