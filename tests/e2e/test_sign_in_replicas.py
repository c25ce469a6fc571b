"""A sign-in started on one replica completes on whichever replica the browser comes back to:
the replicas share a public URL (a load balancer) and keep sign-ins in PostgreSQL."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc
from yarl import URL

from sandbox.server import Sandbox
from tests.support.oauth import (
    calendar_config,
    replica_processes,
    running_sandbox,
)
from tests.support.process import ServiceProcess

PUBLIC = "http://integrations.lb.example"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


@pytest.fixture
async def replicas(database_url: str, sb: Sandbox) -> AsyncIterator[list[ServiceProcess]]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    async with replica_processes(2, database_url, sb, key, "--public-url", PUBLIC) as found:
        yield found


def callback_port(process: ServiceProcess) -> int:
    (serving,) = process.events("sign_in_callback_serving")
    return int(str(serving["address"]).rsplit(":", 1)[1])


async def test_a_sign_in_started_on_one_replica_completes_on_another(
    replicas: list[ServiceProcess], sb: Sandbox
) -> None:
    first, second = replicas
    async with grpc.aio.insecure_channel(f"127.0.0.1:{first.port}") as channel:
        stub = service_pb2_grpc.IntegrationServiceStub(channel)
        integration = (
            await stub.Create(
                api.CreateRequest(
                    display_name="Team calendar",
                    connector_type="google_calendar",
                    config=pb.ConnectorConfig(
                        google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb))
                    ),
                )
            )
        ).integration
        # No credentials yet: the first verification failed.
        assert integration.status in (pb.STATUS_ERROR, pb.STATUS_DISCONNECTED)
        started = await stub.Reauthorize(
            api.ReauthorizeRequest(
                id=integration.id, sign_in=api.OAuthSignIn(return_url="https://app.example/x")
            )
        )
        url = URL(started.authorization_url)
        assert url.query["redirect_uri"] == f"{PUBLIC}/oauth/callback"

        async with aiohttp.ClientSession() as browser:
            async with browser.get(url, allow_redirects=False) as consent:
                callback = URL(consent.headers["Location"])
            assert str(callback.with_query(None)) == f"{PUBLIC}/oauth/callback"
            # The load balancer sends the browser to the second replica.
            routed = callback.with_host("127.0.0.1").with_port(callback_port(second))
            async with browser.get(routed, allow_redirects=False) as done:
                assert done.status == 303, await done.text()
                back = URL(done.headers["Location"])
        assert back.host == "app.example"
        assert back.query["status"] == "ACTIVE"
        got = (await stub.Get(api.GetRequest(id=integration.id))).integration
        assert got.status == pb.STATUS_ACTIVE
        assert sb.state.oauth.token_calls == {"authorization_code": 1}
    assert second.events("sign_in_completed") and not first.events("sign_in_completed")
