"""Reauthorize over real gRPC with the sandbox as the provider: new credentials given directly
(tested at once, DISCONNECTED back to ACTIVE from the stored cursor), and the validation and
preconditions of both ways. The sign-in flow is in test_reauthorize_sign_in.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from datetime import date, datetime, timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox
from service.app import App
from tests.support.clock import FakeClock
from tests.support.oauth import (
    SAFETY,
    calendar_config,
    running_sandbox,
    sandbox_tokens,
)
from tests.support.rpc import RpcFailure, Stub, failure


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        yield sandbox


pytestmark = pytest.mark.sign_in_at_sandbox


async def fails(call: Awaitable[object]) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return failure(raised.value)


def oauth(tokens: dict[str, Any], expire_time: datetime | None = None) -> pb.Credentials:
    expiry = None
    if expire_time is not None:
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(expire_time)
    return pb.Credentials(
        oauth=pb.OAuthTokens(
            access_token=tokens["access_token"],
            refresh_token=tokens["refresh_token"],
            expire_time=expiry,
        )
    )


def calendar(sb: Sandbox) -> pb.ConnectorConfig:
    return pb.ConnectorConfig(google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb)))


async def active_calendar(stub: Stub, sb: Sandbox) -> tuple[pb.Integration, dict[str, Any]]:
    tokens = await sandbox_tokens(sb)
    created = (
        await stub.Create(
            api.CreateRequest(
                display_name="Team calendar",
                connector_type="google_calendar",
                config=calendar(sb),
                credentials=oauth(tokens),
            )
        )
    ).integration
    assert created.status == pb.STATUS_ACTIVE, created
    return created, tokens


async def disconnect(stub: Stub, sb: Sandbox, integration_id: str) -> pb.Integration:
    """The person revokes our access at the provider; the next use finds out."""
    sb.state.oauth.revoke_all()
    test = await stub.TestConnection(api.TestConnectionRequest(id=integration_id))
    assert not test.ok
    assert test.error.code == pb.ERROR_CODE_INVALID_CREDENTIALS
    assert test.integration.status == pb.STATUS_DISCONNECTED
    return test.integration


def add_events(sb: Sandbox, *ids: str) -> None:
    for event_id in ids:
        sb.state.google.put_event(
            "team", event_id, summary=event_id, start=date(2026, 2, 1), end=date(2026, 2, 2)
        )


async def test_revoked_access_disconnects_and_new_credentials_reconnect_from_the_cursor(
    stub: Stub, sb: Sandbox, clock: FakeClock
) -> None:
    integration, _ = await active_calendar(stub, sb)
    add_events(sb, "e1", "e2")
    first_sync = await stub.Sync(api.SyncRequest(id=integration.id, wait=True))
    assert first_sync.run.records_upserted == 2
    disconnected = await disconnect(stub, sb, integration.id)
    assert disconnected.last_error.code == pb.ERROR_CODE_INVALID_CREDENTIALS
    add_events(sb, "e3")

    fresh = await sandbox_tokens(sb)
    clock.advance(minutes=5)
    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(id=integration.id, etag=disconnected.etag, credentials=oauth(fresh))
    )

    assert answer.test.ok
    assert answer.authorization_url == ""
    back = answer.integration
    assert back.status == pb.STATUS_ACTIVE
    assert not back.HasField("last_error")
    assert back.breaker.state == pb.BREAKER_STATE_CLOSED
    assert back.breaker.consecutive_failures == 0
    assert back.credentials.set_time.ToDatetime() > disconnected.credentials.set_time.ToDatetime()
    events = (await stub.ListEvents(api.ListEventsRequest(id=integration.id))).events
    assert [(e.trigger, e.to_status) for e in events[:2]] == [
        ("succeeded", pb.STATUS_ACTIVE),
        ("reauthorize", pb.STATUS_TESTING),
    ]
    assert events[1].from_status == pb.STATUS_DISCONNECTED

    # It continues from the stored cursor: only the change since, no full resync.
    second_sync = await stub.Sync(api.SyncRequest(id=integration.id, wait=True))
    assert not second_sync.run.full_resync
    assert second_sync.run.records_upserted == 1
    assert second_sync.integration.record_count == 3


async def test_credentials_that_do_not_work_keep_the_classified_error(
    stub: Stub, sb: Sandbox
) -> None:
    integration, _ = await active_calendar(stub, sb)
    disconnected = await disconnect(stub, sb, integration.id)

    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(
            id=integration.id,
            etag=disconnected.etag,
            credentials=pb.Credentials(bearer_token="not-a-token-the-provider-knows"),
        )
    )

    assert not answer.test.ok
    assert answer.test.error.code == pb.ERROR_CODE_TOKEN_EXPIRED
    assert answer.integration.status == pb.STATUS_ERROR
    assert answer.integration.last_error.code == pb.ERROR_CODE_TOKEN_EXPIRED
    assert answer.integration.last_error.solution


async def test_a_paused_integration_takes_new_credentials_and_stays_paused(
    stub: Stub, sb: Sandbox
) -> None:
    integration, _ = await active_calendar(stub, sb)
    paused = (await stub.Pause(api.PauseRequest(id=integration.id))).integration
    fresh = await sandbox_tokens(sb)
    calls = sb.state.log.entries()

    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(id=integration.id, credentials=oauth(fresh))
    )

    assert answer.integration.status == pb.STATUS_PAUSED
    assert not answer.HasField("test")
    assert answer.integration.revision > paused.revision
    assert sb.state.log.entries() == calls  # no test while paused


async def test_bad_requests_are_invalid_arguments(stub: Stub, sb: Sandbox) -> None:
    integration, _ = await active_calendar(stub, sb)

    for request, field in [
        (api.ReauthorizeRequest(id=integration.id), "method"),
        (
            api.ReauthorizeRequest(id="not-a-uuid", credentials=pb.Credentials(bearer_token="t")),
            "id",
        ),
        (api.ReauthorizeRequest(id=integration.id, credentials=pb.Credentials()), "credentials"),
        (
            api.ReauthorizeRequest(
                id=integration.id, credentials=pb.Credentials(oauth=pb.OAuthTokens())
            ),
            "credentials.oauth.access_token",
        ),
        (
            api.ReauthorizeRequest(id=integration.id, credentials=pb.Credentials(api_key="k")),
            "credentials",
        ),
        (
            api.ReauthorizeRequest(
                id=integration.id, sign_in=api.OAuthSignIn(return_url="javascript:alert(1)")
            ),
            "sign_in.return_url",
        ),
        (
            api.ReauthorizeRequest(
                id=integration.id, sign_in=api.OAuthSignIn(scopes=["two words"])
            ),
            "sign_in.scopes[0]",
        ),
    ]:
        refused = await fails(stub.Reauthorize(request))
        assert refused.code == grpc.StatusCode.INVALID_ARGUMENT, (field, refused)
        assert field in refused.violations, (field, refused.violations)


async def test_preconditions_etags_and_unknown_integrations(stub: Stub, sb: Sandbox) -> None:
    integration, _ = await active_calendar(stub, sb)
    draft = (
        await stub.Create(api.CreateRequest(display_name="Draft", connector_type="google_calendar"))
    ).integration
    sb.state.feeds.set_feed("holidays", [])
    feed = (
        await stub.Create(
            api.CreateRequest(
                display_name="Feed",
                connector_type="ics_feed",
                config=pb.ConnectorConfig(
                    ics_feed=pb.IcsFeedConfig(url=f"{sb.url}/ics/holidays.ics")
                ),
            )
        )
    ).integration
    assert feed.status == pb.STATUS_ACTIVE
    direct = pb.Credentials(bearer_token="t")

    stale = await fails(
        stub.Reauthorize(api.ReauthorizeRequest(id=integration.id, etag='"1"', credentials=direct))
    )
    assert (stale.code, stale.reason) == (grpc.StatusCode.ABORTED, "ETAG_MISMATCH")
    stale = await fails(
        stub.Reauthorize(
            api.ReauthorizeRequest(id=integration.id, etag='"1"', sign_in=api.OAuthSignIn())
        )
    )
    assert stale.code == grpc.StatusCode.ABORTED

    # During setup the credentials are only saved; completing the config verifies them.
    saved = await stub.Reauthorize(api.ReauthorizeRequest(id=draft.id, credentials=direct))
    assert saved.integration.status == pb.STATUS_DRAFT
    assert saved.integration.credentials.has_credentials
    assert not saved.HasField("test")
    history = (await stub.ListEvents(api.ListEventsRequest(id=draft.id))).events
    assert history[0].trigger == "credentials_saved"

    refused = await fails(
        stub.Reauthorize(api.ReauthorizeRequest(id=feed.id, sign_in=api.OAuthSignIn()))
    )
    assert (refused.code, refused.reason) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SIGN_IN_NOT_SUPPORTED",
    )
    assert refused.metadata["connector_type"] == "ics_feed"

    missing = await fails(
        stub.Reauthorize(
            api.ReauthorizeRequest(id="5b0e2f3e-8a51-4b89-9a4e-3c1d2b7f0a11", credentials=direct)
        )
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_sign_in_needs_a_client_and_a_trusted_endpoint(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    integration, _ = await active_calendar(stub, sb)
    setup = app.reauthorization.setup
    try:
        app.reauthorization.setup = type(setup)({}, [sb.url])
        refused = await fails(
            stub.Reauthorize(api.ReauthorizeRequest(id=integration.id, sign_in=api.OAuthSignIn()))
        )
        assert refused.reason == "OAUTH_CLIENT_NOT_CONFIGURED"
        assert refused.metadata["setting"] == "INTEGRATIONS_GOOGLE_CLIENT_ID"
        app.reauthorization.setup = type(setup)(setup.clients, [])
        refused = await fails(
            stub.Reauthorize(api.ReauthorizeRequest(id=integration.id, sign_in=api.OAuthSignIn()))
        )
        assert refused.reason == "OAUTH_ENDPOINT_NOT_TRUSTED"
        assert "secret-" not in refused.message
    finally:
        app.reauthorization.setup = setup


async def test_credentials_expired_when_given_are_refreshed_at_once(
    stub: Stub, sb: Sandbox, clock: FakeClock
) -> None:
    integration, _ = await active_calendar(stub, sb)
    tokens = await sandbox_tokens(sb)
    sb.state.oauth.expire_access_tokens()
    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(
            id=integration.id, credentials=oauth(tokens, clock() - timedelta(hours=1))
        )
    )
    assert answer.test.ok
    assert sb.state.oauth.token_calls == {"refresh_token": 1}


async def bearer_calendar(stub: Stub, sb: Sandbox, token: str) -> pb.Integration:
    sb.state.add_access_token(token)
    created = (
        await stub.Create(
            api.CreateRequest(
                display_name="Team calendar",
                connector_type="google_calendar",
                config=calendar(sb),
                credentials=pb.Credentials(bearer_token=token),
            )
        )
    ).integration
    assert created.status == pb.STATUS_ACTIVE
    return created


async def test_a_test_of_replaced_credentials_does_not_undo_a_reauthorize(
    stub: Stub, sb: Sandbox, clock: FakeClock
) -> None:
    integration = await bearer_calendar(stub, sb, "old-static-token")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="api"), resource="team")
    old_test = asyncio.create_task(_test(stub, integration.id))
    await asyncio.wait_for(sb.state.gates["api"].wait_for(1), SAFETY)

    # While that test waits at the provider, the old token dies and new credentials arrive.
    sb.state.oauth.revoke("old-static-token")
    sb.state.add_access_token("new-static-token")
    clock.advance(seconds=1)
    answer = await stub.Reauthorize(
        api.ReauthorizeRequest(
            id=integration.id, credentials=pb.Credentials(bearer_token="new-static-token")
        )
    )
    assert answer.test.ok
    sb.state.gates["api"].open()

    stale = await asyncio.wait_for(old_test, SAFETY)
    assert not stale.ok  # it reports what it saw...
    assert stale.error.code == pb.ERROR_CODE_TOKEN_EXPIRED
    assert stale.integration.status == pb.STATUS_ACTIVE  # ...but records nothing
    assert (
        await stub.Get(api.GetRequest(id=integration.id))
    ).integration.status == pb.STATUS_ACTIVE


async def test_a_sync_with_replaced_credentials_ends_without_failing_the_new_ones(
    stub: Stub, sb: Sandbox, clock: FakeClock
) -> None:
    integration = await bearer_calendar(stub, sb, "old-static-token")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="api"), resource="team")
    sync = asyncio.create_task(_sync(stub, integration.id))
    await asyncio.wait_for(sb.state.gates["api"].wait_for(1), SAFETY)
    sb.state.oauth.revoke("old-static-token")
    sb.state.add_access_token("new-static-token")
    clock.advance(seconds=1)
    assert (
        await stub.Reauthorize(
            api.ReauthorizeRequest(
                id=integration.id, credentials=pb.Credentials(bearer_token="new-static-token")
            )
        )
    ).test.ok
    sb.state.gates["api"].open()

    ended = (await asyncio.wait_for(sync, SAFETY)).run
    assert ended.outcome == pb.SYNC_RUN_OUTCOME_CANCELLED
    assert (
        await stub.Get(api.GetRequest(id=integration.id))
    ).integration.status == pb.STATUS_ACTIVE


async def _test(stub: Stub, integration_id: str) -> api.TestConnectionResponse:
    return await stub.TestConnection(api.TestConnectionRequest(id=integration_id))


async def _sync(stub: Stub, integration_id: str) -> api.SyncResponse:
    return await stub.Sync(api.SyncRequest(id=integration_id, wait=True))
