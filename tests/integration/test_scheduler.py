"""The scheduler against a real PostgreSQL and the sandbox: what it claims (and what never),
its concurrency limits, claims and leases between replicas, the fencing of stalled writers,
handing work back at shutdown, and lateness reaching WatchStatus.

Replicas are `App`s on one database sharing the test's clock; sweeps are run by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TypedDict
from uuid import UUID, uuid4

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.app import App
from service.config import Settings
from service.domain.status import Status
from service.domain.sync import SyncTrigger
from service.storage.database import Tx
from service.storage.errors import LeaseLost
from service.storage.sync import PageWrite
from tests.support.clock import FakeClock
from tests.support.rpc import Stub, failure
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    committed,
    events,
    get,
    google,
    ics,
    provider_events,
    seed_calendar,
    summaries,
)
from tests.support.waiting import until
from tests.support.watch import Recorder

SAFETY = 20.0
TENANT = "default"


class Limits(TypedDict):
    """The concurrency settings of a second, limited replica."""

    sync_concurrency: int
    connector_concurrency: str


pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT, purpose_header="X-Sandbox-Purpose")


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=6)  # three pages of two
        yield sandbox


@pytest.fixture
async def replica(settings: Settings, clock: FakeClock, app: App) -> AsyncIterator[App]:
    """A second replica on the same database (after `app`, which migrated it)."""
    other = await App.start(settings, clock=clock)
    yield other
    await other.close()


async def calendar(
    stub: Stub,
    sb: Sandbox,
    calendar_id: str = CALENDAR,
    *,
    sync_interval: duration_pb2.Duration | None = None,
    breaker_threshold: int | None = None,
) -> pb.Integration:
    if calendar_id != CALENDAR:
        seed_calendar(sb.state, events=2, calendar_id=calendar_id)
    response = await stub.Create(
        api.CreateRequest(
            display_name="Team calendar",
            connector_type="google_calendar",
            config=google(sb, calendar_id),
            credentials=bearer(),
            sync_interval=sync_interval,
            breaker_threshold=breaker_threshold,
        )
    )
    assert response.integration.status == pb.STATUS_ACTIVE
    return response.integration


async def finish(app: App) -> None:
    await asyncio.wait_for(app.scheduler.idle(), SAFETY)


def moment(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


async def runs(stub: Stub, ident: str) -> list[pb.SyncRun]:
    return list((await stub.ListSyncRuns(api.ListSyncRunsRequest(id=ident))).runs)


async def test_a_due_active_integration_is_synced_and_then_waits_for_its_interval(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, sync_interval=duration_pb2.Duration(seconds=600))
    assert moment(created.next_sync_time) == clock.now  # verified: due at once

    [claim] = await app.scheduler.sweep()
    await finish(app)

    assert claim.integration_id == UUID(created.id) and not claim.probe
    synced = await get(stub, created.id)
    assert synced.record_count == 6 and synced.sync_state == pb.SYNC_STATE_SYNCED
    wait = moment(synced.next_sync_time) - clock.now
    assert timedelta(seconds=540) <= wait <= timedelta(seconds=600)  # jitter only shortens
    [run] = await runs(stub, created.id)
    assert run.trigger == pb.SYNC_RUN_TRIGGER_SCHEDULED
    assert [e.purpose for e in sb.state.log.entries(provider=Provider.GOOGLE)][-3:] == ["sync"] * 3
    assert await app.scheduler.sweep() == []  # not due again yet
    clock.now += wait
    assert len(await app.scheduler.sweep()) == 1
    await finish(app)


async def test_only_active_and_error_integrations_are_ever_claimed(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    active = await calendar(stub, sb)
    paused = await calendar(stub, sb, "paused")
    await stub.Pause(api.PauseRequest(id=paused.id))
    draft = (
        await stub.Create(api.CreateRequest(display_name="Draft", connector_type="google_calendar"))
    ).integration
    incomplete = (
        await stub.Create(
            api.CreateRequest(
                display_name="Incomplete",
                connector_type="google_calendar",
                config=pb.ConnectorConfig(google_calendar=pb.GoogleCalendarConfig()),
            )
        )
    ).integration
    assert incomplete.status == pb.STATUS_CONFIGURE
    others = {
        Status.TESTING: await calendar(stub, sb, "testing"),
        Status.DISCONNECTED: await calendar(stub, sb, "disconnected"),
    }
    for status, integration in others.items():
        await app.db.fetchrow(
            "UPDATE integrations SET status = $2 WHERE id = $1 RETURNING 1",
            UUID(integration.id),
            status.value,
        )
    # Whatever their schedule says: all of them "due" long ago.
    await app.db.fetchrow(
        "UPDATE integrations SET next_sync_at = $1 RETURNING 1", clock.now - timedelta(days=1)
    )

    claimed = await app.scheduler.sweep()
    await finish(app)

    assert [str(c.integration_id) for c in claimed] == [active.id]
    assert {draft.id, incomplete.id, paused.id} & {str(c.integration_id) for c in claimed} == set()


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"sync_concurrency": 3, "connector_concurrency": "8"}, 3),
        ({"sync_concurrency": 16, "connector_concurrency": "8,google_calendar=2"}, 2),
    ],
)
async def test_concurrency_limits_bound_what_one_process_claims(
    settings: Settings,
    app: App,
    clock: FakeClock,
    stub: Stub,
    sb: Sandbox,
    limits: Limits,
    expected: int,
) -> None:
    names = [f"cal-{n}" for n in range(5)]
    for name in names:
        await calendar(stub, sb, name)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="hold"), times=None)
    limited = await App.start(replace(settings, **limits), clock=clock)
    try:
        first = await limited.scheduler.sweep()
        await asyncio.wait_for(sb.state.gates["hold"].wait_for(expected), SAFETY)
        assert len(first) == expected
        assert await limited.scheduler.sweep() == []  # full: nothing more while they run

        sb.state.clear_faults()
        sb.state.gates.open("hold")
        await asyncio.wait_for(limited.scheduler.idle(), SAFETY)
        second = await limited.scheduler.sweep()
        await asyncio.wait_for(limited.scheduler.idle(), SAFETY)
    finally:
        await limited.close()
    assert len(second) == min(expected, len(names) - expected)
    assert {c.integration_id for c in first}.isdisjoint(c.integration_id for c in second)


async def test_a_backlog_claim_looks_only_at_full_types_and_a_sweep_at_every_type(
    settings: Settings, app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    for name in ("cal-0", "cal-1", "cal-2"):
        await calendar(stub, sb, name)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="hold"), times=None)
    limited = await App.start(
        replace(settings, sync_concurrency=16, connector_concurrency="8,google_calendar=2"),
        clock=clock,
    )
    try:
        first = await limited.scheduler.sweep()  # two of three calendars: a backlog
        await asyncio.wait_for(sb.state.gates["hold"].wait_for(2), SAFETY)
        # A feed due only after that sweep, in a type that had nothing due then.
        sb.state.feeds.set_feed("team", [])
        feed = await stub.Create(
            api.CreateRequest(
                display_name="Feed", connector_type="ics_feed", config=ics(f"{sb.url}/ics/team.ics")
            )
        )
        assert feed.integration.status == pb.STATUS_ACTIVE
        sb.state.clear_faults()
        sb.state.gates.open("hold")
        await finish(limited)
        backlog = await limited.scheduler.claim(backlog_only=True)
        await finish(limited)
        everything = await limited.scheduler.sweep()
        await finish(limited)
    finally:
        await limited.close()
    assert [c.connector_type for c in first] == ["google_calendar"] * 2
    assert [c.connector_type for c in backlog] == ["google_calendar"]  # the third calendar
    assert [str(c.integration_id) for c in everything] == [feed.integration.id]


@pytest.mark.settings(scheduler=True, scheduler_sweep_interval=timedelta(hours=1))
async def test_the_loop_drains_a_backlog_as_work_finishes_not_at_the_next_sweep(
    settings: Settings, app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    await app.scheduler.stop()  # the test's other replica stays out of the way
    names = [f"cal-{n}" for n in range(6)]
    created = [await calendar(stub, sb, name) for name in names]
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="hold"), times=None)
    looping = await App.start(
        replace(settings, sync_concurrency=16, connector_concurrency="8,google_calendar=4"),
        clock=clock,
    )
    try:
        # The loop's first sweep fills the four slots; the other two wait for slots.
        await asyncio.wait_for(sb.state.gates["hold"].wait_for(4), SAFETY)
        sb.state.clear_faults()
        sb.state.gates.open("hold")

        async def synced() -> bool:
            outcomes = [r.outcome for i in created for r in await runs(stub, i.id)]
            return outcomes.count(pb.SYNC_RUN_OUTCOME_SUCCEEDED) == len(names)

        # Claimed as the first ones finish, not an hour later at the next sweep.
        await until(synced, "every calendar synced by the loop", timeout=SAFETY)
    finally:
        await looping.close()


async def test_replicas_never_claim_the_same_work_and_a_dead_replicas_claim_expires(
    settings: Settings, app: App, replica: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    async with app.db.transaction() as tx:  # a replica claims, then dies before starting
        [claim] = await tx.claims.claim_due(
            now=clock.now,
            connector_type="google_calendar",
            limit=10,
            sync_claim_until=clock.now + settings.sync_lease,
            probe_claim_until=clock.now + settings.sync_lease,
            worker="dead-replica",
        )

    assert await replica.scheduler.sweep() == []
    clock.now += settings.sync_lease
    [taken] = await replica.scheduler.sweep()
    await finish(replica)

    assert taken.lease_version == claim.lease_version + 1
    [run] = await runs(stub, created.id)
    assert run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert await summaries(stub, created.id) == provider_events(sb.state)
    assert await app.scheduler.syncs.start_claimed(claim) is None  # the dead claim is void


async def test_a_stalled_runner_cannot_write_after_its_run_was_taken_over(
    settings: Settings, app: App, replica: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    sb.state.gates.open("through")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="through"), resource=CALENDAR)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="stalled"), resource=CALENDAR)
    [claim] = await app.scheduler.sweep()
    await asyncio.wait_for(sb.state.gates["stalled"].wait_for(1), SAFETY)  # page 2 is asked for
    stalled = await committed(stub, created.id, pages=1)

    clock.now += settings.sync_lease  # its lease runs out (no heartbeat in a frozen process)
    [takeover] = await replica.scheduler.sweep()
    await finish(replica)
    sb.state.google.put_event(
        CALENDAR,
        "e2",
        summary="Changed after the takeover",
        start=datetime(2026, 2, 2, 9, tzinfo=UTC),
        end=datetime(2026, 2, 2, 10, tzinfo=UTC),
    )
    clock.now += timedelta(hours=1)
    await replica.scheduler.sweep()
    await finish(replica)
    sb.state.gates.open("stalled")  # the stalled runner wakes with a stale page 2
    await finish(app)

    ended = await app.syncs.get_run(TENANT, UUID(stalled.id))
    assert (ended.outcome.value, ended.pages) == ("CANCELLED", 1)
    assert "lease expired" in ended.note
    assert takeover.lease_version > claim.lease_version
    assert await summaries(stub, created.id) == provider_events(sb.state)


async def test_a_probe_claim_fences_a_stalled_sync_of_the_same_integration(
    settings: Settings, app: App, replica: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, breaker_threshold=1)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.NOT_FOUND), resource=CALENDAR)
    await app.scheduler.sweep()
    await finish(app)
    assert (await get(stub, created.id)).breaker.state == pb.BREAKER_STATE_OPEN
    # A person's Sync starts; its first page hangs (this replica stalls).
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="stalled"), resource=CALENDAR)
    started = await stub.Sync(api.SyncRequest(id=created.id))
    await asyncio.wait_for(sb.state.gates["stalled"].wait_for(1), SAFETY)

    clock.now = max(
        moment((await get(stub, created.id)).next_sync_time), clock.now + settings.sync_lease
    )
    [probe] = await replica.scheduler.sweep()  # the run's lease expired: a probe is claimed
    await finish(replica)
    assert probe.probe
    probed = await get(stub, created.id)
    assert probed.breaker.state == pb.BREAKER_STATE_HALF_OPEN  # the probe worked: trial next
    sb.state.gates.open("stalled")
    await app.syncs.wait(await app.syncs.get_run(TENANT, UUID(started.run.id)), SAFETY)

    ended = await app.syncs.get_run(TENANT, UUID(started.run.id))
    assert ended.outcome.value == "CANCELLED" and ended.pages == 0
    assert "claim was taken over" in ended.note
    assert (await get(stub, created.id)).record_count == 0  # its page never landed


async def test_a_write_with_a_stale_lease_version_is_refused_by_the_database(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    ident = UUID(created.id)
    now = app.clock()
    async with app.db.transaction() as tx:
        version = await tx.claims.claim_now(TENANT, ident)
        run = await tx.sync.insert_run(
            TENANT, ident, uuid4(), SyncTrigger.MANUAL, now, now, lease_version=version - 1
        )
    page = PageWrite(
        records={"e1": '{"summary": "stale"}'},
        deleted=[],
        listing=None,
        ends_listing=False,
        cursor={"position": None},
        full=False,
    )
    with pytest.raises(LeaseLost):
        async with app.db.transaction() as tx:
            await tx.sync.commit_page(run, page, now=now, lease_expires_at=now)
    assert (await get(stub, created.id)).record_count == 0


async def test_shutdown_hands_the_run_back_after_its_page_and_another_replica_continues(
    settings: Settings, app: App, replica: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    sb.state.gates.open("through")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="through"), resource=CALENDAR)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="page-2"), resource=CALENDAR)
    await app.scheduler.sweep()
    await asyncio.wait_for(sb.state.gates["page-2"].wait_for(1), SAFETY)
    await committed(stub, created.id, pages=1)

    closing = asyncio.create_task(app.syncs.close(grace=SAFETY))  # SIGTERM, in effect
    sb.state.gates.open("page-2")  # the page in flight still lands
    await asyncio.wait_for(closing, SAFETY)

    [handed] = await runs(stub, created.id)
    assert handed.outcome == pb.SYNC_RUN_OUTCOME_CANCELLED and handed.pages == 2
    note = (await app.syncs.get_run(TENANT, UUID(handed.id))).note
    assert note == "the service shut down; handed back after page 2"
    back = await get(stub, created.id)
    assert back.sync_state == pb.SYNC_STATE_SYNCED and moment(back.next_sync_time) == clock.now
    assert len(await replica.scheduler.sweep()) == 1  # at once: nothing left to expire
    await finish(replica)
    latest = (await runs(stub, created.id))[0]
    assert (latest.outcome, latest.pages, latest.records_upserted) == (
        pb.SYNC_RUN_OUTCOME_SUCCEEDED,
        1,
        2,
    )  # page 3, from the cursor
    assert await summaries(stub, created.id) == provider_events(sb.state)


async def test_becoming_late_and_stopping_being_late_reach_watch_status(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, sync_interval=duration_pb2.Duration(seconds=10))
    await app.scheduler.sweep()
    await finish(app)
    recorder = Recorder(stub.WatchStatus(api.WatchStatusRequest()))
    try:
        await recorder.until_snapshot()
        assert not recorder.view[created.id].late
        sb.state.inject(
            Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource=CALENDAR, times=None
        )

        for _ in range(3):  # failing retries; it becomes late after twice its interval
            clock.now = moment((await get(stub, created.id)).next_sync_time)
            await app.scheduler.sweep()
            await finish(app)
        clock.now += timedelta(seconds=20)
        await app.scheduler.sweep()
        await finish(app)
        await recorder.until(lambda r: any(m.event.trigger == "late" for m in r.changes))
        await app.scheduler.sweep()  # another sweep notices nothing new
        await finish(app)
        late = [m for m in recorder.changes if m.event.trigger == "late"]
        assert len(late) == 1 and late[0].change.late
        assert (late[0].event.actor, late[0].event.to_status) == ("scheduler", pb.STATUS_ERROR)
        assert "more than twice its sync interval (10s) ago" in late[0].event.reason
        # Shown after its trigger ("late: its last successful sync was…"), never "late: late:".
        assert late[0].event.reason.startswith("its last successful sync was at ")

        sb.state.clear_faults()
        clock.now = moment((await get(stub, created.id)).next_sync_time)
        await app.scheduler.sweep()
        await finish(app)
        await recorder.until(lambda r: not r.view[created.id].late)
    finally:
        await recorder.stop()
    assert [e.trigger for e in await events(stub, created.id)].count("late") == 1


async def test_the_breaker_threshold_is_set_per_integration_and_validated(
    stub: Stub, sb: Sandbox
) -> None:
    default = await calendar(stub, sb, breaker_threshold=0)
    assert default.breaker.threshold == 5
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await calendar(stub, sb, breaker_threshold=101)
    f = failure(refused.value)
    assert f.code is grpc.StatusCode.INVALID_ARGUMENT
    assert "between 1 and 100" in f.violations["breaker_threshold"]

    seven = (
        await stub.Configure(api.ConfigureRequest(id=default.id, breaker_threshold=7))
    ).integration
    assert seven.breaker.threshold == 7
    assert (await events(stub, default.id))[0].reason == "changed: breaker threshold"
    back = (
        await stub.Configure(api.ConfigureRequest(id=default.id, breaker_threshold=0))
    ).integration
    assert back.breaker.threshold == 5
    unchanged = (
        await stub.Configure(api.ConfigureRequest(id=default.id, display_name="X"))
    ).integration
    assert unchanged.breaker.threshold == 5


async def test_a_new_interval_moves_the_next_regular_sync(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, sync_interval=duration_pb2.Duration(seconds=3600))
    await app.scheduler.sweep()
    await finish(app)

    shorter = (
        await stub.Configure(
            api.ConfigureRequest(id=created.id, sync_interval=duration_pb2.Duration(seconds=60))
        )
    ).integration

    assert moment(shorter.next_sync_time) == moment(shorter.last_sync_time) + timedelta(seconds=60)


async def test_a_writer_holding_the_revision_lock_is_bounded_by_the_server(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    async with app.db.raw() as conn, conn.transaction():
        tx = Tx(conn, app.db.keys)
        before = await conn.fetchval("SHOW idle_in_transaction_session_timeout")
        current = await tx.integrations.lock(TENANT, UUID(created.id))
        await tx.integrations.record_change(
            before=current,
            after=current,
            trigger="test",
            actor="test",
            reason="test",
            occurred_at=current.updated_at,
        )
        during = await conn.fetchval("SHOW idle_in_transaction_session_timeout")
    async with app.db.raw() as conn:
        after = await conn.fetchval("SHOW idle_in_transaction_session_timeout")
    assert (before, during, after) == ("0", "5s", "0")
