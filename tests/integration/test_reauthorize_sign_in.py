"""The OAuth2 sign-in end to end: Reauthorize answers a consent URL with PKCE and a one-time
state, a browser follows it through the sandbox's consent page to the service's callback, which
exchanges the code, stores the tokens, tests the connection and sends the browser back. And
every way it can go wrong: consent denied, expired, replayed or unknown states, a failing
exchange, a deleted integration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from yarl import URL

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox
from service.app import App
from service.config import parse_origins
from service.connectors.google_calendar import GOOGLE_OAUTH as GOOGLE
from tests.support.clock import FakeClock
from tests.support.oauth import (
    CLIENT_ID,
    Visit,
    browse,
    calendar_config,
    running_sandbox,
    sandbox_tokens,
)
from tests.support.rpc import Stub, failure

RETURN = "https://app.example/settings/integrations?tab=calendars"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


pytestmark = pytest.mark.sign_in_at_sandbox


async def disconnected_calendar(stub: Stub, sb: Sandbox) -> pb.Integration:
    tokens = await sandbox_tokens(sb)
    created = (
        await stub.Create(
            api.CreateRequest(
                display_name="Team calendar",
                connector_type="google_calendar",
                config=pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb))
                ),
                credentials=pb.Credentials(
                    oauth=pb.OAuthTokens(
                        access_token=tokens["access_token"], refresh_token=tokens["refresh_token"]
                    )
                ),
            )
        )
    ).integration
    sb.state.oauth.revoke_all()
    test = await stub.TestConnection(api.TestConnectionRequest(id=created.id))
    assert test.integration.status == pb.STATUS_DISCONNECTED
    sb.state.oauth.token_calls.clear()
    return test.integration


async def sign_in(stub: Stub, integration: pb.Integration, **fields: Any) -> URL:
    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(
            id=integration.id, etag=integration.etag, sign_in=api.OAuthSignIn(**fields)
        )
    )
    assert answer.integration.revision == integration.revision  # nothing changed yet
    assert not answer.HasField("test")
    return URL(answer.authorization_url)


async def get(stub: Stub, integration_id: str) -> pb.Integration:
    return (await stub.Get(api.GetRequest(id=integration_id))).integration


async def latest_event(stub: Stub, integration_id: str) -> pb.IntegrationEvent:
    return (await stub.ListEvents(api.ListEventsRequest(id=integration_id))).events[0]


def callback_of(visits: list[Visit]) -> Visit:
    (found,) = [v for v in visits if v.url.path == "/oauth/callback"]
    return found


async def test_the_full_pkce_sign_in_through_the_callback(
    stub: Stub, sb: Sandbox, capsys: pytest.CaptureFixture[str]
) -> None:
    integration = await disconnected_calendar(stub, sb)

    url = await sign_in(stub, integration, return_url=RETURN)

    assert str(url.with_query(None)) == f"{sb.url}/oauth2/auth"
    query = url.query
    assert query["client_id"] == CLIENT_ID
    assert query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43
    assert query["scope"] == " ".join(GOOGLE.default_scopes)
    assert query["access_type"] == "offline"
    assert URL(query["redirect_uri"]).path == "/oauth/callback"
    assert "client_secret" not in query

    visits = await browse(str(url))

    assert [v.status for v in visits] == [302, 303, 0]
    callback = callback_of(visits)
    assert callback.headers["Referrer-Policy"] == "no-referrer"
    back = visits[-1].url
    assert str(back.with_query(None)) == "https://app.example/settings/integrations"
    assert back.query["tab"] == "calendars"
    assert back.query["integration_id"] == integration.id
    assert back.query["status"] == "ACTIVE"

    reconnected = await get(stub, integration.id)
    assert reconnected.status == pb.STATUS_ACTIVE
    assert reconnected.credentials.kind == pb.CREDENTIALS_KIND_OAUTH
    assert not reconnected.HasField("last_error")
    assert sb.state.oauth.token_calls == {"authorization_code": 1}
    events = (await stub.ListEvents(api.ListEventsRequest(id=integration.id))).events
    assert [(e.trigger, e.actor) for e in events[:2]] == [
        ("succeeded", "oauth_callback"),
        ("reauthorize", "oauth_callback"),
    ]
    # The stored tokens work as they are: no refresh needed.
    assert (await stub.TestConnection(api.TestConnectionRequest(id=integration.id))).ok
    assert sb.state.oauth.token_calls_total == 1

    # The state is one-time: replaying the callback changes nothing and exchanges nothing.
    replay = await browse(str(callback.url))
    assert replay[0].status == 400
    assert "does not work" in replay[0].text
    assert sb.state.oauth.token_calls_total == 1
    assert (await get(stub, integration.id)).revision == (await get(stub, integration.id)).revision

    logged = capsys.readouterr()
    for secret in (callback.url.query["code"], callback.url.query["state"]):
        assert secret not in logged.out + logged.err


async def test_without_a_return_url_a_page_says_it_worked(stub: Stub, sb: Sandbox) -> None:
    integration = await disconnected_calendar(stub, sb)
    visits = await browse(str(await sign_in(stub, integration)))
    page = visits[-1]
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Signed in" in page.text
    assert "connected and working again" in page.text
    assert (await get(stub, integration.id)).status == pb.STATUS_ACTIVE


async def test_consent_denied_is_a_page_and_an_event(stub: Stub, sb: Sandbox) -> None:
    integration = await disconnected_calendar(stub, sb)
    sb.state.oauth.deny_consent = True

    visits = await browse(str(await sign_in(stub, integration, return_url=RETURN)))

    page = visits[-1]
    assert page.url.path == "/oauth/callback"
    assert page.status == 400
    assert "Access was not granted" in page.text
    assert "declined" in page.text
    assert 'href="https://app.example/settings/integrations?tab=calendars"' in page.text
    event = await latest_event(stub, integration.id)
    assert (event.trigger, event.actor) == ("sign_in_failed", "oauth_callback")
    assert event.from_status == event.to_status == pb.STATUS_DISCONNECTED
    assert event.error.code == pb.ERROR_CODE_ACCESS_DENIED
    assert (await get(stub, integration.id)).status == pb.STATUS_DISCONNECTED
    assert sb.state.oauth.token_calls_total == 0


async def test_an_expired_sign_in_is_refused(stub: Stub, sb: Sandbox, clock: FakeClock) -> None:
    integration = await disconnected_calendar(stub, sb)
    url = await sign_in(stub, integration)
    clock.advance(minutes=11)

    page = (await browse(str(url)))[-1]

    assert page.status == 400
    assert "expired" in page.text
    assert "expired" in (await latest_event(stub, integration.id)).reason
    assert sb.state.oauth.token_calls_total == 0
    assert (await get(stub, integration.id)).status == pb.STATUS_DISCONNECTED


async def test_unknown_and_malformed_callbacks_get_a_page_never_a_traceback(
    stub: Stub, sb: Sandbox
) -> None:
    integration = await disconnected_calendar(stub, sb)
    callback = URL((await sign_in(stub, integration)).query["redirect_uri"])
    async with aiohttp.ClientSession() as http:
        for query in (
            {},
            {"state": "garbage"},
            {"code": "c", "state": "ZGVmYXVsdA." + "A" * 43},
            {"error": "<script>alert(1)</script>", "state": "x"},
            {"state": "\x00" * 1000},
        ):
            async with http.get(callback.with_query(query)) as answer:
                text = await answer.text()
                assert answer.status == 400, query
                assert "Traceback" not in text
                assert "<script>" not in text
                assert "does not work" in text
    assert sb.state.oauth.token_calls_total == 0


async def test_a_provider_error_and_a_failing_exchange_change_nothing(
    stub: Stub, sb: Sandbox
) -> None:
    integration = await disconnected_calendar(stub, sb)

    # The provider sends the browser back with an error of its own.
    url = await sign_in(stub, integration)
    callback = URL(url.query["redirect_uri"])
    provider_error = callback.with_query(state=url.query["state"], error="server_error")
    page = (await browse(str(provider_error)))[-1]
    assert page.status == 400 and "server_error" in page.text

    # The code exchange fails at the token endpoint. (The failed sign-in is in the history,
    # so the integration's etag moved on.)
    integration = await get(stub, integration.id)
    sb.state.inject(Provider.OAUTH, Fault(FaultKind.UNAVAILABLE), resource="token")
    page = (await browse(str(await sign_in(stub, integration))))[-1]
    assert page.status == 400
    assert "could not be completed" in page.text
    event = await latest_event(stub, integration.id)
    assert event.trigger == "sign_in_failed"
    assert event.error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    assert (await get(stub, integration.id)).status == pb.STATUS_DISCONNECTED


async def test_a_paused_integration_signs_in_and_stays_paused(stub: Stub, sb: Sandbox) -> None:
    integration = await disconnected_calendar(stub, sb)
    # Reconnect, then pause: a paused integration keeps its pause through a sign-in.
    await browse(str(await sign_in(stub, integration)))
    paused = (await stub.Pause(api.PauseRequest(id=integration.id))).integration

    visits = await browse(str(await sign_in(stub, paused, return_url=RETURN)))

    assert visits[-1].url.query["status"] == "PAUSED"
    assert (await get(stub, integration.id)).status == pb.STATUS_PAUSED


async def test_a_sign_in_of_a_deleted_integration_is_gone_with_it(stub: Stub, sb: Sandbox) -> None:
    integration = await disconnected_calendar(stub, sb)
    url = await sign_in(stub, integration)
    await stub.Delete(api.DeleteRequest(id=integration.id))

    page = (await browse(str(url)))[-1]

    assert page.status == 400 and "does not work" in page.text
    assert sb.state.oauth.token_calls_total == 0


async def test_the_state_and_verifier_are_not_stored_in_clear(
    stub: Stub, sb: Sandbox, database_url: str
) -> None:
    integration = await disconnected_calendar(stub, sb)
    url = await sign_in(stub, integration)
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM oauth_sign_ins")
    finally:
        await conn.close()
    assert row is not None
    dumped = repr(dict(row))
    assert url.query["state"] not in dumped
    assert url.query["state"].split(".")[1].encode() not in bytes(row["verifier_sealed"])


async def test_sign_in_is_refused_when_no_callback_is_served(
    stub: Stub, sb: Sandbox, app: App
) -> None:
    integration = await disconnected_calendar(stub, sb)
    served = app.reauthorization.callback_url
    app.reauthorization.callback_url = None
    try:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.Reauthorize(
                api.ReauthorizeRequest(id=integration.id, sign_in=api.OAuthSignIn())
            )
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        app.reauthorization.callback_url = served


async def test_signing_in_first_then_choosing_the_calendar(stub: Stub, sb: Sandbox) -> None:
    # The usual setup: "Sign in", then pick the calendar. Before the calendar is chosen the
    # config is incomplete, so the sign-in only saves the tokens.
    endpoints = {k: v for k, v in calendar_config(sb).items() if k != "calendar_id"}
    draft = (
        await stub.Create(
            api.CreateRequest(
                display_name="New calendar",
                connector_type="google_calendar",
                config=pb.ConnectorConfig(google_calendar=pb.GoogleCalendarConfig(**endpoints)),
            )
        )
    ).integration
    assert draft.status == pb.STATUS_CONFIGURE
    assert list(draft.missing_config_fields) == ["calendar_id"]

    visits = await browse(str(await sign_in(stub, draft, return_url=RETURN)))

    assert visits[-1].url.query["status"] == "CONFIGURE"
    signed_in = await get(stub, draft.id)
    assert signed_in.status == pb.STATUS_CONFIGURE
    assert signed_in.credentials.kind == pb.CREDENTIALS_KIND_OAUTH
    assert (await latest_event(stub, draft.id)).trigger == "credentials_saved"

    configured = await stub.Configure(
        api.ConfigureRequest(
            id=draft.id,
            config=pb.ConnectorConfig(
                google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb))
            ),
        )
    )
    assert configured.test.ok, configured.test.error
    assert configured.integration.status == pb.STATUS_ACTIVE


async def test_return_urls_must_be_on_an_origin_the_deployment_allows(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    integration = await disconnected_calendar(stub, sb)
    allowed = parse_origins("https://app.example,http://localhost:3000", "return origins")
    app.reauthorization.return_origins = allowed  # INTEGRATIONS_SIGN_IN_RETURN_ORIGINS
    try:
        for elsewhere in ("https://evil.example/settings", "http://app.example/settings"):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await sign_in(stub, integration, return_url=elsewhere)
            found = failure(refused.value)
            assert found.code is grpc.StatusCode.INVALID_ARGUMENT
            assert "INTEGRATIONS_SIGN_IN_RETURN_ORIGINS" in found.violations["sign_in.return_url"]
        assert await sign_in(stub, integration, return_url=RETURN)
        assert await sign_in(stub, integration, return_url="http://localhost:3000/done")
    finally:
        app.reauthorization.return_origins = frozenset()


def test_return_origins_are_parsed_strictly() -> None:
    assert parse_origins("https://App.Example:443,http://[::1]:8080/", "x") == {
        "https://app.example",
        "http://[::1]:8080",
    }
    for bad in ("app.example", "https://app.example/path", "ftp://x", " https://a.example", ","):
        with pytest.raises(ValueError):
            parse_origins(bad, "x")
