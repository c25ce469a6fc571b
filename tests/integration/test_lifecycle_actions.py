"""Pause, Resume, Delete, ListEvents and tenancy over real gRPC.

Each test drives the service as a calling backend would and checks what that caller relies on:
the status, the revision and etag, the history, and for every mistake the gRPC code plus the
google.rpc details a client acts on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from uuid import UUID

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from service.app import App
from service.config import Settings
from tests.support.clock import FakeClock
from tests.support.lifecycle import create, fails, make_active
from tests.support.rpc import Stub, next_message

# -- Pause, Resume -----------------------------------------------------------------------


async def test_pause_and_resume_an_active_integration(stub: Stub, app: App) -> None:
    ident = await make_active(app)
    active = (await stub.Get(api.GetRequest(id=ident))).integration
    assert active.status == pb.STATUS_ACTIVE and active.sync_state == pb.SYNC_STATE_SYNCED
    paused = (
        await stub.Pause(api.PauseRequest(id=ident, etag=active.etag, reason="holiday"))
    ).integration
    assert paused.status == pb.STATUS_PAUSED
    assert paused.sync_state == pb.SYNC_STATE_UNSPECIFIED
    assert list(paused.allowed_actions) == [
        pb.ACTION_CONFIGURE,
        pb.ACTION_TEST_CONNECTION,
        pb.ACTION_RESUME,
        pb.ACTION_REAUTHORIZE,
        pb.ACTION_DELETE,
    ]
    resumed = (await stub.Resume(api.ResumeRequest(id=ident, etag=paused.etag))).integration
    assert resumed.status == pb.STATUS_ACTIVE
    assert resumed.next_sync_time.ToDatetime() <= resumed.update_time.ToDatetime()
    history = (await stub.ListEvents(api.ListEventsRequest(id=ident))).events
    assert [e.trigger for e in history[:2]] == ["resume", "pause"]
    assert history[1].reason == "holiday"
    assert history[1].from_status == pb.STATUS_ACTIVE
    assert history[1].to_status == pb.STATUS_PAUSED


async def test_disallowed_transitions_say_where_it_is_and_what_is_allowed(
    stub: Stub, app: App
) -> None:
    draft = await create(stub)
    f = await fails(stub.Pause(api.PauseRequest(id=draft.id)))
    assert f.code is grpc.StatusCode.FAILED_PRECONDITION
    assert f.reason == "TRANSITION_NOT_ALLOWED"
    assert f.metadata["current_status"] == "DRAFT"
    assert f.metadata["allowed_actions"] == "Configure,Reauthorize,Delete"
    assert f.precondition_subjects == ["DRAFT"]
    assert "cannot Pause an integration in status DRAFT" in f.message
    ident = await make_active(app)
    not_paused = await fails(stub.Resume(api.ResumeRequest(id=ident)))
    assert not_paused.code is grpc.StatusCode.FAILED_PRECONDITION
    assert not_paused.metadata["current_status"] == "ACTIVE"
    await stub.Pause(api.PauseRequest(id=ident))
    twice = await fails(stub.Pause(api.PauseRequest(id=ident)))
    assert twice.metadata["current_status"] == "PAUSED"


async def test_pause_with_a_stale_etag_is_aborted(stub: Stub, app: App) -> None:
    ident = await make_active(app)
    f = await fails(stub.Pause(api.PauseRequest(id=ident, etag='"1"')))
    assert f.code is grpc.StatusCode.ABORTED
    assert (await stub.Get(api.GetRequest(id=ident))).integration.status == pb.STATUS_ACTIVE


async def test_resuming_with_an_incomplete_config_asks_to_configure(stub: Stub, app: App) -> None:
    ident = await make_active(app)
    await stub.Pause(api.PauseRequest(id=ident))
    saved = (
        await stub.Configure(
            api.ConfigureRequest(id=ident, config=pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig()))
        )
    ).integration
    assert saved.status == pb.STATUS_PAUSED  # configuring does not unpause
    resumed = (await stub.Resume(api.ResumeRequest(id=ident))).integration
    assert resumed.status == pb.STATUS_CONFIGURE
    assert list(resumed.missing_config_fields) == ["url"]


# -- Delete ------------------------------------------------------------------------------


async def test_delete_removes_the_integration_and_everything_it_owns(stub: Stub, app: App) -> None:
    i = await create(stub, credentials=pb.Credentials(bearer_token="t0ken"))
    stale = await fails(stub.Delete(api.DeleteRequest(id=i.id, etag='"0"')))
    assert stale.code is grpc.StatusCode.ABORTED
    deleted = await stub.Delete(api.DeleteRequest(id=i.id, etag=i.etag))
    assert deleted.id == i.id and deleted.revision > i.revision
    assert (await fails(stub.Get(api.GetRequest(id=i.id)))).code is grpc.StatusCode.NOT_FOUND
    assert (
        await fails(stub.ListEvents(api.ListEventsRequest(id=i.id)))
    ).code is grpc.StatusCode.NOT_FOUND
    again = await fails(stub.Delete(api.DeleteRequest(id=i.id)))
    assert again.code is grpc.StatusCode.NOT_FOUND
    async with app.db.raw() as conn:
        assert await conn.fetchval("SELECT count(*) FROM credentials") == 0
        kept = await conn.fetch(
            "SELECT trigger FROM events WHERE integration_id = $1", app_uuid(i.id)
        )
    assert [r["trigger"] for r in kept] == ["delete"]  # only the tombstone for watchers


def app_uuid(text: str) -> UUID:
    return UUID(text)


# -- ListEvents and revisions ------------------------------------------------------------


async def test_every_change_bumps_the_revision_and_is_in_the_history(stub: Stub, app: App) -> None:
    ident = await make_active(app)
    await stub.Pause(api.PauseRequest(id=ident))
    await stub.Resume(api.ResumeRequest(id=ident))
    await stub.Configure(api.ConfigureRequest(id=ident, display_name="Renamed"))
    first = await stub.ListEvents(api.ListEventsRequest(id=ident, page_size=3))
    rest = await stub.ListEvents(
        api.ListEventsRequest(id=ident, page_size=3, page_token=first.next_page_token)
    )
    assert not rest.next_page_token
    events = [*first.events, *rest.events]
    assert [e.trigger for e in events] == [
        "settings_changed",
        "resume",
        "pause",
        "succeeded",
        "configure_complete",
        "create",
    ]
    revisions = [e.revision for e in events]
    assert revisions == sorted(revisions, reverse=True) and len(set(revisions)) == 6
    current = (await stub.Get(api.GetRequest(id=ident))).integration
    assert current.revision == revisions[0]
    assert events[-1].from_status == pb.STATUS_UNSPECIFIED  # creation has no "from"
    assert {e.actor for e in events} == {"api", "test"}


# -- Robustness and tenancy --------------------------------------------------------------


async def test_an_internal_failure_is_reported_without_a_traceback(stub: Stub, app: App) -> None:
    await app.db.pool.close()  # the database goes away under the service
    f = await fails(stub.List(api.ListRequest()))
    assert f.code is grpc.StatusCode.INTERNAL
    assert f.reason == "INTERNAL"
    assert len(f.metadata["support_reference"]) == 12
    assert "Traceback" not in f.message and "asyncpg" not in f.message


@pytest.fixture
async def keyed_stub(settings: Settings, clock: FakeClock) -> AsyncIterator[Stub]:
    from service.api.server import Server

    keyed = await App.start(
        replace(settings, api_keys="acme-key-0123456789=acme,globex-key-0123456789=globex"),
        clock=clock,
    )
    srv = Server(keyed)
    await srv.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield service_pb2_grpc.IntegrationServiceStub(ch)
    await srv.stop(grace=1)
    await keyed.close()


async def test_each_tenants_watchers_get_their_own_change_at_the_same_revision(
    keyed_stub: Stub,
) -> None:
    # Revisions count per tenant, so two tenants' changes share numbers; a stream must still
    # send its own tenant's (each change's message is built once for all of its streams).
    streams = []
    for tenant in ("acme", "globex"):
        key = (("authorization", f"Bearer {tenant}-key-0123456789"),)
        made = await keyed_stub.Create(
            api.CreateRequest(display_name=f"{tenant} 1", connector_type="google_calendar"),
            metadata=key,
        )
        stream = keyed_stub.WatchStatus(api.WatchStatusRequest(), metadata=key)
        first = await next_message(stream)
        assert first.snapshot.display_name == f"{tenant} 1"
        assert (await next_message(stream)).snapshot_complete.revision == 1
        streams.append((tenant, key, made.integration.id, stream))
    for tenant, key, ident, _ in streams:
        await keyed_stub.Configure(
            api.ConfigureRequest(id=ident, display_name=f"{tenant} 2"), metadata=key
        )
    for tenant, _, _, stream in streams:
        change = await next_message(stream)
        assert (change.event.revision, change.change.display_name) == (2, f"{tenant} 2")
        stream.cancel()


async def test_tenants_see_only_their_own_integrations(keyed_stub: Stub) -> None:
    acme = (("authorization", "Bearer acme-key-0123456789"),)
    globex = (("authorization", "Bearer globex-key-0123456789"),)
    anonymous = await fails(keyed_stub.List(api.ListRequest()))
    assert anonymous.code is grpc.StatusCode.UNAUTHENTICATED
    wrong = await fails(
        keyed_stub.List(api.ListRequest(), metadata=(("authorization", "Bearer nope"),))
    )
    assert wrong.code is grpc.StatusCode.UNAUTHENTICATED
    # Two authorization headers are ambiguous: neither counts (the last one used to win).
    twice = await fails(
        keyed_stub.List(api.ListRequest(), metadata=(("authorization", "Bearer nope"), *acme))
    )
    assert twice.code is grpc.StatusCode.UNAUTHENTICATED
    mine = (
        await keyed_stub.Create(
            api.CreateRequest(display_name="Acme cal", connector_type="google_calendar"),
            metadata=acme,
        )
    ).integration
    theirs = await fails(keyed_stub.Get(api.GetRequest(id=mine.id), metadata=globex))
    assert theirs.code is grpc.StatusCode.NOT_FOUND  # never PERMISSION_DENIED
    assert list((await keyed_stub.List(api.ListRequest(), metadata=globex)).integrations) == []
    assert len((await keyed_stub.List(api.ListRequest(), metadata=acme)).integrations) == 1
