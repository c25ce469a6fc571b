"""TestConnection and the verification that Create / Configure start: the answer (ok or the
classified error, and how long it took) and how the integration moves by it."""

from __future__ import annotations

from uuid import UUID

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.datasets import AuthKind, DatasetAuth
from service.app import App
from service.domain.status import Trigger
from tests.support.rpc import Stub, failure
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    create,
    events,
    get,
    google,
    rest,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
def calendar_events() -> int:
    return 1


async def check(stub: Stub, ident: str) -> api.TestConnectionResponse:
    response: api.TestConnectionResponse = await stub.TestConnection(
        api.TestConnectionRequest(id=ident)
    )
    return response


async def test_configure_with_a_complete_config_verifies_it_at_once(
    stub: Stub, sb: Sandbox
) -> None:
    draft = (
        await stub.Create(
            api.CreateRequest(
                display_name="Team", connector_type="google_calendar", credentials=bearer()
            )
        )
    ).integration
    configured = await stub.Configure(api.ConfigureRequest(id=draft.id, config=google(sb)))

    assert configured.test.ok and not configured.test.HasField("error")
    assert configured.test.HasField("duration")
    assert configured.integration.status == pb.STATUS_ACTIVE
    assert configured.integration.sync_state == pb.SYNC_STATE_SYNCED
    assert configured.integration.HasField("next_sync_time")  # a first sync is due now
    history = [(e.trigger, e.to_status) for e in await events(stub, draft.id)][:2]
    assert history == [("succeeded", pb.STATUS_ACTIVE), ("configure_complete", pb.STATUS_TESTING)]


async def test_an_active_integration_is_tested_in_place(stub: Stub, calendar: str) -> None:
    response = await check(stub, calendar)
    assert response.ok and response.integration.status == pb.STATUS_ACTIVE
    latest = (await events(stub, calendar))[0]
    assert (latest.trigger, latest.from_status, latest.to_status) == (
        "succeeded",
        pb.STATUS_ACTIVE,
        pb.STATUS_ACTIVE,
    )
    assert latest.reason.startswith("connection test succeeded in ")


async def test_a_failing_test_answers_the_error_and_records_it(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.FORBIDDEN), resource=CALENDAR)

    response = await check(stub, calendar)

    assert not response.ok
    assert response.error.code == pb.ERROR_CODE_ACCESS_DENIED
    assert response.error.what_it_means.startswith("The account you used doesn't have")
    assert response.integration.status == pb.STATUS_ERROR
    assert response.integration.last_error == response.error
    assert response.integration.breaker.consecutive_failures == 1


async def test_a_success_brings_an_error_back_to_active_and_clears_the_failures(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SERVER_ERROR), resource=CALENDAR, times=2)
    await check(stub, calendar)
    failed = await check(stub, calendar)
    assert failed.integration.breaker.consecutive_failures == 2

    response = await check(stub, calendar)

    assert response.ok
    integration = response.integration
    assert integration.status == pb.STATUS_ACTIVE and not integration.HasField("last_error")
    assert integration.breaker.consecutive_failures == 0
    history = [(e.trigger, e.to_status) for e in await events(stub, calendar)][:2]
    assert history == [("succeeded", pb.STATUS_ACTIVE), ("test", pb.STATUS_TESTING)]


async def test_a_paused_integration_is_only_reported_on(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    paused = (await stub.Pause(api.PauseRequest(id=calendar))).integration
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAUTHORIZED), resource=CALENDAR)

    response = await check(stub, calendar)

    assert not response.ok and response.error.code == pb.ERROR_CODE_TOKEN_EXPIRED
    assert response.integration.status == pb.STATUS_PAUSED
    assert response.integration.revision == paused.revision  # nothing changed
    assert (await check(stub, calendar)).ok


async def test_a_rejected_calendar_is_fixed_then_tested_back_to_active(
    stub: Stub, sb: Sandbox
) -> None:
    created = await create(stub, "google_calendar", google(sb, "later"), bearer())
    assert created.status == pb.STATUS_CONFIGURE
    sb.state.google.add_calendar("later")  # the user shares the calendar, then retries

    response = await check(stub, created.id)

    assert response.ok and response.integration.status == pb.STATUS_ACTIVE
    assert not response.integration.HasField("last_error")


async def test_disconnected_credentials_are_tested_again(stub: Stub, sb: Sandbox) -> None:
    sb.state.datasets.set_dataset(
        "private", [{"id": 1}], auth=DatasetAuth(AuthKind.API_KEY, secret="right")
    )
    config = rest(f"{sb.url}/api/private", records_path="data", id_field="id")
    created = await create(stub, "rest_json", config, pb.Credentials(api_key="wrong"))
    assert created.status == pb.STATUS_DISCONNECTED

    response = await check(stub, created.id)

    assert response.error.code == pb.ERROR_CODE_INVALID_CREDENTIALS
    assert response.integration.status == pb.STATUS_DISCONNECTED
    history = [(e.trigger, e.to_status) for e in await events(stub, created.id)][:2]
    assert history == [
        ("credentials_rejected", pb.STATUS_DISCONNECTED),
        ("test", pb.STATUS_TESTING),
    ]


async def test_a_draft_has_nothing_to_test(stub: Stub) -> None:
    draft = (
        await stub.Create(api.CreateRequest(display_name="New", connector_type="ics_feed"))
    ).integration
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(stub, draft.id)
    f = failure(refused.value)
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f.metadata["current_status"] == "DRAFT" and "Configure it first" in f.message


async def test_an_incomplete_configuration_is_completed_first(
    stub: Stub, sb: Sandbox, app: App
) -> None:
    created = await create(stub, "rest_json", rest(f"{sb.url}/api/x"))
    assert created.status == pb.STATUS_CONFIGURE
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await check(stub, created.id)
    f = failure(refused.value)
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f.reason == "CONFIG_INCOMPLETE" and f.metadata["missing_config_fields"] == "id_field"


async def test_a_test_changes_nothing_when_the_integration_was_reconfigured_meanwhile(
    stub: Stub, sb: Sandbox, app: App, calendar: str
) -> None:
    # The verification of an older configuration must not decide about the newer one.
    before = await app.lifecycle.get("default", UUID(calendar))
    await app.lifecycle.change(
        "default",
        before.id,
        Trigger.TEST,
        actor="test",
        reason="another test is running",
        mutate=lambda i: i.replace(config={"calendar_id": "x"}),
    )
    after, outcome = await app.tester.verify(before)
    assert outcome.ok
    assert after.status.value == "ACTIVE"  # (A, TEST) stays ACTIVE; nothing recorded on top
    assert (await get(stub, calendar)).revision == after.revision
