"""Sync against the sandbox's Google Calendar: pages, cursors, incremental changes, the 410
full resync, one run at a time, and Pause / Delete / failures in the middle of a run.

Real HTTP (the sandbox), real PostgreSQL, real gRPC. Pages are two events each, so five
events take three pages; gates hold a request where a test needs the run to stand still.
"""

from __future__ import annotations

from uuid import UUID, uuid4

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.app import App
from service.domain.status import Trigger
from service.domain.sync import SyncTrigger
from tests.support.clock import FakeClock
from tests.support.rpc import Stub, failure
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    committed,
    create,
    events,
    get,
    google,
    provider_events,
    put_event,
    summaries,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
def calendar_events() -> int:
    return 5


async def sync(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    return response


def hold_second_page(sb: Sandbox) -> str:
    """Let the next events request through and park the one after it; returns the gate."""
    sb.state.gates.open("first")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="first"), resource=CALENDAR)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="second"), resource=CALENDAR)
    return "second"


def event_queries(sb: Sandbox) -> list[str]:
    return [
        e.query
        for e in sb.state.log.entries(provider=Provider.GOOGLE)
        if e.path.endswith("/events")
    ]


async def test_a_first_sync_lists_everything_page_by_page(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    response = await sync(stub, calendar)

    run = response.run
    assert run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert run.trigger == pb.SYNC_RUN_TRIGGER_MANUAL
    assert (run.pages, run.records_upserted, run.records_deleted) == (3, 5, 0)
    assert run.full_resync and run.HasField("end_time")
    assert await summaries(stub, calendar) == provider_events(sb.state)
    integration = response.integration
    assert integration.status == pb.STATUS_ACTIVE
    assert integration.sync_state == pb.SYNC_STATE_SYNCED
    assert integration.record_count == 5
    assert integration.HasField("last_sync_time") and integration.HasField("next_sync_time")
    history = [(e.trigger, e.reason) for e in await events(stub, calendar)][:2]
    assert history[0] == (
        "succeeded",
        "sync run #1 succeeded: 3 pages, 5 records written, 0 deleted, full resync",
    )
    assert history[1] == ("sync", "sync run #1 started (manual)")


async def test_the_next_sync_brings_only_the_changes(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    put_event(sb.state, "e6", "Added")
    put_event(sb.state, "e2", "Changed", day=2)
    sb.state.google.delete_event(CALENDAR, "e4")  # a cancelled event is a deletion

    response = await sync(stub, calendar)

    run = response.run
    assert not run.full_resync
    assert (run.pages, run.records_upserted, run.records_deleted) == (2, 2, 1)
    assert "syncToken=" in event_queries(sb)[-2]  # the changes since the last sync, no more
    assert await summaries(stub, calendar) == provider_events(sb.state)
    assert (await summaries(stub, calendar))["e2"] == "Changed"
    assert response.integration.record_count == 5


async def test_a_sync_without_changes_writes_nothing(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    run = (await sync(stub, calendar)).run
    assert (run.pages, run.records_upserted, run.records_deleted) == (1, 0, 0)


async def test_a_stale_sync_token_starts_over_and_drops_what_the_provider_lost(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    # Google forgets our sync token (HTTP 410) and e3 vanishes without a tombstone: only a
    # full listing can notice that it is gone.
    sb.state.google.invalidate_sync_tokens(CALENDAR, drop=["e3"])
    put_event(sb.state, "e7", "While we were away", day=7)

    response = await sync(stub, calendar)

    statuses = [e.status for e in sb.state.log.entries(provider=Provider.GOOGLE)]
    assert 410 in statuses
    run = response.run
    assert run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED and run.full_resync
    assert run.records_deleted == 1
    assert await summaries(stub, calendar) == provider_events(sb.state)
    assert "e3" not in await summaries(stub, calendar)
    assert response.integration.record_count == len(provider_events(sb.state)) == 5
    # …and the sync after it is incremental again.
    assert not (await sync(stub, calendar)).run.full_resync


async def test_a_second_sync_while_one_runs_returns_the_running_one(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="hold"), resource=CALENDAR)
    first = await stub.Sync(api.SyncRequest(id=calendar))
    await sb.state.gates["hold"].wait_for(1)

    second = await stub.Sync(api.SyncRequest(id=calendar))
    assert second.run.id == first.run.id
    assert second.run.outcome == pb.SYNC_RUN_OUTCOME_RUNNING
    assert (await get(stub, calendar)).sync_state == pb.SYNC_STATE_SYNCING

    sb.state.gates.open("hold")
    waited = await sync(stub, calendar)  # waits for the running one rather than starting one
    assert waited.run.id == first.run.id
    assert waited.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    runs = await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))
    assert [r.id for r in runs.runs] == [first.run.id]


async def test_the_database_refuses_a_second_running_run(app: App, calendar: str) -> None:
    tenant, ident, now = "default", UUID(calendar), app.clock()
    async with app.db.transaction() as tx:
        await tx.sync.insert_run(tenant, ident, uuid4(), SyncTrigger.MANUAL, now, now)
    with pytest.raises(Exception, match="sync_runs_one_running"):
        async with app.db.transaction() as tx:
            await tx.sync.insert_run(tenant, ident, uuid4(), SyncTrigger.SCHEDULED, now, now)


async def test_a_run_whose_process_died_is_taken_over_after_its_lease(
    stub: Stub, sb: Sandbox, app: App, clock: FakeClock, calendar: str
) -> None:
    # A RUNNING run that no process of ours runs, as a crashed replica leaves it.
    async with app.db.transaction() as tx:
        orphan = await tx.sync.insert_run(
            "default",
            UUID(calendar),
            uuid4(),
            SyncTrigger.SCHEDULED,
            clock(),
            clock() + app.settings.sync_lease,
        )
    still = await stub.Sync(api.SyncRequest(id=calendar))
    assert still.run.id == str(orphan.id)  # its lease still runs: it is the running one

    clock.advance(seconds=app.settings.sync_lease.total_seconds() + 1)
    response = await sync(stub, calendar)

    assert response.run.id != str(orphan.id)
    assert response.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))).runs
    assert [(r.id, r.outcome) for r in runs] == [
        (response.run.id, pb.SYNC_RUN_OUTCOME_SUCCEEDED),
        (str(orphan.id), pb.SYNC_RUN_OUTCOME_CANCELLED),
    ]
    assert "its process stopped without ending it" in runs[1].reason
    assert runs[0].reason == ""  # a run that succeeded has nothing to explain
    assert await summaries(stub, calendar) == provider_events(sb.state)


async def test_pause_mid_sync_stops_the_run_and_resume_continues_from_the_cursor(
    stub: Stub, sb: Sandbox, app: App, calendar: str
) -> None:
    gate = hold_second_page(sb)
    started = await stub.Sync(api.SyncRequest(id=calendar))
    await sb.state.gates[gate].wait_for(1)  # page 2 is on its way
    await committed(stub, calendar, pages=1)

    paused = await stub.Pause(api.PauseRequest(id=calendar))
    assert paused.integration.status == pb.STATUS_PAUSED
    sb.state.gates.open(gate)
    run = await app.syncs.wait(await app.syncs.get_run("default", UUID(started.run.id)))

    assert run.outcome.value == "CANCELLED" and run.pages == 1
    assert "PAUSED" in run.note
    [shown] = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))).runs
    assert shown.outcome == pb.SYNC_RUN_OUTCOME_CANCELLED and shown.reason == run.note
    assert len(await summaries(stub, calendar)) == 2  # page 2 arrived too late to be written
    assert (await get(stub, calendar)).record_count == 2

    await stub.Resume(api.ResumeRequest(id=calendar))
    resumed = await sync(stub, calendar)

    assert "pageToken=" in event_queries(sb)[-2]  # from where it left off, not from scratch
    assert resumed.run.pages == 2 and resumed.run.full_resync
    assert await summaries(stub, calendar) == provider_events(sb.state)
    assert resumed.integration.record_count == 5


async def test_delete_mid_sync_cancels_the_run_cleanly(
    stub: Stub, sb: Sandbox, app: App, calendar: str
) -> None:
    gate = hold_second_page(sb)
    started = await stub.Sync(api.SyncRequest(id=calendar))
    await sb.state.gates[gate].wait_for(1)
    await committed(stub, calendar, pages=1)
    run = await app.syncs.get_run("default", UUID(started.run.id))

    deleted = await stub.Delete(api.DeleteRequest(id=calendar))
    assert deleted.records_deleted == 2
    sb.state.gates.open(gate)
    ended = await app.syncs.wait(run)

    assert ended.outcome.value == "CANCELLED" and "deleted" in ended.note
    left = await app.db.fetch("SELECT * FROM records WHERE integration_id = $1", UUID(calendar))
    assert left == []
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_failure_mid_sync_keeps_the_committed_pages_and_the_next_sync_continues(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    sb.state.gates.open("first")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="first"), resource=CALENDAR)
    sb.state.inject(
        Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE, retry_after=30), resource=CALENDAR
    )

    failed = await sync(stub, calendar)

    assert failed.run.outcome == pb.SYNC_RUN_OUTCOME_FAILED and failed.run.pages == 1
    assert failed.run.error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    integration = failed.integration
    assert integration.status == pb.STATUS_ERROR
    assert integration.last_error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    assert integration.last_error.retry_after.seconds == 30
    assert integration.breaker.consecutive_failures == 1
    assert integration.record_count == 2
    latest = (await events(stub, calendar))[0]
    assert (latest.trigger, latest.to_status) == ("failed", pb.STATUS_ERROR)
    assert latest.error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE

    recovered = await sync(stub, calendar)  # a manual Sync from ERROR

    assert "pageToken=" in event_queries(sb)[-2]
    assert recovered.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert recovered.integration.status == pb.STATUS_ACTIVE
    assert not recovered.integration.HasField("last_error")
    assert recovered.integration.breaker.consecutive_failures == 0
    assert await summaries(stub, calendar) == provider_events(sb.state)


async def test_a_service_shutting_down_ends_its_runs_cancelled(
    stub: Stub, sb: Sandbox, app: App, calendar: str
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="hold"), resource=CALENDAR)
    started = await stub.Sync(api.SyncRequest(id=calendar))
    await sb.state.gates["hold"].wait_for(1)

    await app.syncs.close()

    run = await app.syncs.get_run("default", UUID(started.run.id))
    assert run.outcome.value == "CANCELLED" and "shut down" in run.note
    integration = await get(stub, calendar)
    assert integration.sync_state == pb.SYNC_STATE_SYNCED  # not SYNCING for ever
    assert (await events(stub, calendar))[0].trigger == "sync_stopped"


@pytest.mark.parametrize(
    ("trigger", "status", "hint"),
    [
        (Trigger.PAUSE, "PAUSED", "Resume it"),
        (Trigger.CREDENTIALS_REJECTED, "DISCONNECTED", "Reauthorize it first"),
    ],
)
async def test_sync_says_what_to_do_instead(
    stub: Stub, app: App, calendar: str, trigger: Trigger, status: str, hint: str
) -> None:
    await app.lifecycle.change("default", UUID(calendar), trigger, actor="test", reason="setup")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Sync(api.SyncRequest(id=calendar))
    f = failure(refused.value)
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f.reason == "TRANSITION_NOT_ALLOWED"
    assert f.metadata["current_status"] == status
    assert hint in f.message


async def test_sync_of_an_unconfigured_integration_asks_for_a_configuration(stub: Stub) -> None:
    draft = (
        await stub.Create(api.CreateRequest(display_name="New", connector_type="google_calendar"))
    ).integration
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Sync(api.SyncRequest(id=draft.id))
    f = failure(refused.value)
    assert f.code == grpc.StatusCode.FAILED_PRECONDITION
    assert f.metadata["current_status"] == "DRAFT" and "Configure it first" in f.message


async def test_sync_runs_are_listed_newest_first_page_by_page(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    ids = [(await sync(stub, calendar)).run.id for _ in range(3)]

    first = await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar, page_size=2))
    assert [r.id for r in first.runs] == ids[:0:-1]
    rest = await stub.ListSyncRuns(
        api.ListSyncRunsRequest(id=calendar, page_size=2, page_token=first.next_page_token)
    )
    assert [r.id for r in rest.runs] == ids[:1] and rest.next_page_token == ""
    assert rest.runs[0].full_resync and not first.runs[0].full_resync

    other = await create(stub, "google_calendar", google(sb), bearer())
    with pytest.raises(grpc.aio.AioRpcError) as mixed:
        await stub.ListSyncRuns(
            api.ListSyncRunsRequest(id=other.id, page_token=first.next_page_token)
        )
    assert failure(mixed.value).violations.keys() == {"page_token"}


async def test_records_are_listed_by_id_page_by_page(stub: Stub, calendar: str) -> None:
    await sync(stub, calendar)
    first = await stub.ListRecords(api.ListRecordsRequest(id=calendar, page_size=2))
    second = await stub.ListRecords(
        api.ListRecordsRequest(id=calendar, page_size=2, page_token=first.next_page_token)
    )
    third = await stub.ListRecords(
        api.ListRecordsRequest(id=calendar, page_size=2, page_token=second.next_page_token)
    )

    ids = [r.id for page in (first, second, third) for r in page.records]
    assert ids == ["e1", "e2", "e3", "e4", "e5"] and third.next_page_token == ""
    record = first.records[0]
    assert record.data["summary"] == "Event 1" and record.data["status"] == "confirmed"
    assert record.HasField("update_time")


async def test_an_unknown_integration_has_no_runs_or_records(stub: Stub) -> None:
    missing = str(uuid4())
    for call in (
        stub.ListSyncRuns(api.ListSyncRunsRequest(id=missing)),
        stub.ListRecords(api.ListRecordsRequest(id=missing)),
        stub.Sync(api.SyncRequest(id=missing)),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_new_configuration_starts_over_and_drops_the_old_records(
    stub: Stub, sb: Sandbox, calendar: str
) -> None:
    await sync(stub, calendar)
    sb.state.google.add_calendar("other")
    put_event(sb.state, "o1", "Other calendar", calendar_id="other")

    configured = await stub.Configure(api.ConfigureRequest(id=calendar, config=google(sb, "other")))
    assert configured.integration.status == pb.STATUS_ACTIVE
    response = await sync(stub, calendar)

    assert response.run.full_resync
    assert await summaries(stub, calendar) == {"o1": "Other calendar"}
    assert response.integration.record_count == 1


async def test_sync_runs_are_kept_for_their_retention_but_the_latest_always(
    stub: Stub, app: App, clock: FakeClock, calendar: str
) -> None:
    for _ in range(3):
        await sync(stub, calendar)
        clock.advance(seconds=3600)
    latest = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))).runs[0]

    clock.advance(seconds=app.settings.sync_run_retention.total_seconds() - 2 * 3600)
    await app.retention.compact()  # the newest two are within the window, the first is not
    assert len((await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))).runs) == 2

    clock.advance(seconds=30 * 86400)
    await app.retention.compact()  # all are old now: the latest stays
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=calendar))).runs
    assert [r.id for r in runs] == [latest.id]
