"""What a provider (or a stored configuration) can do at fetch time that no check at Create
could see, against a real local HTTP server: redirects to other schemes and to numeric hosts,
URL user info beside credentials, credentials that cannot be sent, a chain of slow redirects,
and a provider that echoes our request headers back into what we log."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
from aiohttp import web
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from service.config import Settings
from service.connectors.http import HttpClient, HttpPolicy
from service.connectors.provider_failures import ProviderFailure
from service.domain.taxonomy import ErrorCode
from tests.support.rpc import Stub
from tests.support.syncing import ics, rest


class Provider:
    """A local HTTP server with the answers these tests need; counts what reaches it."""

    def __init__(self) -> None:
        self.requests: list[web.Request] = []
        self.port = 0
        self.hop_delay = 0.0
        app = web.Application()
        app.router.add_get("/redirect", self.redirect)
        app.router.add_get("/hop/{n}", self.hop)
        app.router.add_get("/ok", self.ok)
        app.router.add_get("/echo", self.echo)
        self.runner = web.AppRunner(app)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def redirect(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        to = request.query["to"].replace("PORT", str(self.port))
        return web.Response(status=302, headers={"Location": to})

    async def hop(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        await asyncio.sleep(self.hop_delay)  # a slow provider, not synchronisation
        n = int(request.match_info["n"])
        if n == 0:
            return web.Response(text="done")
        return web.Response(status=302, headers={"Location": f"/hop/{n - 1}"})

    async def ok(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.Response(text="ok")

    async def echo(self, request: web.Request) -> web.Response:
        """What some APIs (and debugging proxies) do: the request, headers included."""
        self.requests.append(request)
        echoed = {"method": request.method, "headers": dict(request.headers)}
        return web.json_response({"echo": echoed})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    await p.runner.setup()
    site = web.TCPSite(p.runner, "127.0.0.1", 0)
    await site.start()
    p.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield p
    await p.runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient.open(HttpPolicy(allow_private_networks=True))  # the server is local
    yield client
    await client.close()


async def refused(call: object) -> ProviderFailure:
    with pytest.raises(ProviderFailure) as caught:
        await call  # type: ignore[misc]
    return caught.value


@pytest.mark.parametrize("to", ["file:///etc/passwd", "ftp://127.0.0.1:PORT/team.ics"])
async def test_a_redirect_to_another_scheme_is_a_configuration_error(
    provider: Provider, http: HttpClient, to: str
) -> None:
    failure = await refused(http.get(f"{provider.url}/redirect?to={to}", what="The feed"))
    assert failure.code is ErrorCode.RESOURCE_NOT_FOUND  # not INTERNAL: change the URL
    assert "does not fetch" in failure.message
    assert len(provider.requests) == 1


async def test_a_numeric_host_is_fetched_at_the_address_it_names(
    provider: Provider, http: HttpClient
) -> None:
    to = "http://127.1:PORT/ok"  # 127.0.0.1, as browsers read it
    response = await http.get(f"{provider.url}/redirect?to={to}", what="The feed")
    assert response.status == 200 and response.body == b"ok"
    assert str(response.url).startswith("http://127.0.0.1:")


@pytest.mark.parametrize("host", ["127.1", "0x7f.0.0.1", "2130706433", "0177.0.0.1"])
async def test_numeric_forms_of_local_addresses_are_refused_by_the_guard(host: str) -> None:
    guarded = HttpClient.open(HttpPolicy(allow_private_networks=False))
    try:
        # The guard refuses before connecting: nothing is dialled.
        failure = await refused(guarded.get(f"http://{host}:9/x.ics", what="The feed"))
    finally:
        await guarded.close()
    assert failure.code is ErrorCode.RESOURCE_NOT_FOUND
    assert "private or local network" in failure.message


async def test_user_info_in_a_url_is_never_sent_beside_credentials(
    provider: Provider, http: HttpClient
) -> None:
    url = f"http://someone:hunter2@127.0.0.1:{provider.port}/echo"
    response = await http.get(url, what="The API", credentials={"Authorization": "Bearer tok-1"})
    assert response.status == 200
    assert provider.requests[0].headers["Authorization"] == "Bearer tok-1"


@pytest.mark.parametrize("value", ["Bearer abc\r\nX-Injected: 1", "Bearer abc\n", "Basic a\x00b"])
async def test_credentials_that_cannot_be_sent_are_invalid_credentials(
    provider: Provider, http: HttpClient, value: str
) -> None:
    failure = await refused(
        http.get(f"{provider.url}/ok", what="The API", credentials={"Authorization": value})
    )
    assert failure.code is ErrorCode.INVALID_CREDENTIALS  # new credentials fix it
    assert "abc" not in failure.message
    assert provider.requests == []


async def test_one_deadline_covers_every_redirect(provider: Provider) -> None:
    provider.hop_delay = 0.15
    # Five hops of 0.15 s: each well within 0.4 s, all together not.
    client = HttpClient.open(
        HttpPolicy(allow_private_networks=True, timeout=timedelta(seconds=0.4))
    )
    try:
        failure = await refused(client.get(f"{provider.url}/hop/4", what="The feed"))
    finally:
        await client.close()
    assert failure.code is ErrorCode.SERVICE_UNAVAILABLE
    assert "did not answer within 0.4s" in failure.message
    assert len(provider.requests) < 5


SECRETS = {
    "bearer": "tok-5b1d9e0c7a",
    "api_key": "key-3f8e2d1c9b",
    "password": "pw-7c6b5a4d3e",
}
BASIC = base64.b64encode(f"alice:{SECRETS['password']}".encode()).decode()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, allow_private_networks=True)


@pytest.mark.parametrize(
    ("connector_type", "credentials"),
    [
        ("rest_json", pb.Credentials(bearer_token=SECRETS["bearer"])),
        ("rest_json", pb.Credentials(api_key=SECRETS["api_key"])),
        (
            "rest_json",
            pb.Credentials(basic=pb.BasicAuth(username="alice", password=SECRETS["password"])),
        ),
        (
            "ics_feed",
            pb.Credentials(basic=pb.BasicAuth(username="alice", password=SECRETS["password"])),
        ),
    ],
)
async def test_an_echoing_provider_never_puts_a_secret_in_the_logs(
    stub: Stub,
    provider: Provider,
    connector_type: str,
    credentials: pb.Credentials,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{provider.url}/echo"
    config = (
        rest(url, records_path="data", id_field="id") if connector_type == "rest_json" else ics(url)
    )
    created = (
        await stub.Create(
            api.CreateRequest(
                display_name="Echo",
                connector_type=connector_type,
                config=config,
                credentials=credentials,
            )
        )
    ).integration
    sync = await stub.Sync(api.SyncRequest(id=created.id, wait=True))
    assert provider.requests, "the provider was asked"
    sent = json.dumps(dict(provider.requests[0].headers))
    assert any(s in sent for s in (*SECRETS.values(), BASIC))  # it did get the secret
    history = await stub.ListEvents(api.ListEventsRequest(id=created.id))
    runs = await stub.ListSyncRuns(api.ListSyncRunsRequest(id=created.id))
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "provider_answer_unusable" in logs  # the excerpt was logged...
    assert "echo" in logs
    shown = logs + str(created) + str(sync) + str(history) + str(runs)
    for secret in (*SECRETS.values(), BASIC, "alice:"):
        assert secret not in shown  # ...without what the provider echoed of ours
