"""The safety brake against the sandbox, driven by the scheduler with a clock moved by hand.

Nothing here waits on time: each step moves the clock to the integration's next attempt
(`next_sync_time`), runs one sweep and waits for the work it claimed to finish. The sandbox's
request log tells syncs from probes by the purpose header the service sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from google.protobuf import timestamp_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Fault, FaultKind, Provider, Sandbox
from sandbox.datasets import AuthKind, DatasetAuth
from service.app import App
from service.config import Settings
from service.storage.claims import Claim
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    events,
    get,
    google,
    provider_events,
    rest,
    seed_calendar,
    summaries,
)

PURPOSE_HEADER = "X-Sandbox-Purpose"
#: Seconds; a safety net for awaits that must never hang, never a sleep.
SAFETY = 20.0


pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT, purpose_header=PURPOSE_HEADER)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=6)  # three pages of two
        yield sandbox


async def calendar(stub: Stub, sb: Sandbox, threshold: int | None = None) -> pb.Integration:
    """An ACTIVE Google Calendar integration (its first sync is due at once)."""
    response = await stub.Create(
        api.CreateRequest(
            display_name="Team calendar",
            connector_type="google_calendar",
            config=google(sb),
            credentials=bearer(),
            breaker_threshold=threshold,
        )
    )
    assert response.integration.status == pb.STATUS_ACTIVE
    return response.integration


async def sweep(app: App) -> list[Claim]:
    """One sweep, and the end of everything it started."""
    claimed = await app.scheduler.sweep()
    await asyncio.wait_for(app.scheduler.idle(), SAFETY)
    return claimed


def moment(ts: timestamp_pb2.Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


async def next_attempt(app: App, clock: FakeClock, stub: Stub, ident: str) -> pb.Integration:
    """Move the clock to the integration's next attempt, sweep, and read it back."""
    current = await get(stub, ident)
    assert current.HasField("next_sync_time"), "nothing is scheduled"
    clock.now = max(clock.now, moment(current.next_sync_time))
    claimed = await sweep(app)
    assert [str(c.integration_id) for c in claimed] == [ident]
    return await get(stub, ident)


def failing_after_page_one(sb: Sandbox) -> None:
    """The next request works (a first page lands), every later one answers HTTP 503."""
    sb.state.gates.open("through")
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="through"), resource=CALENDAR)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource=CALENDAR, times=None)


async def opened(app: App, clock: FakeClock, stub: Stub, sb: Sandbox) -> pb.Integration:
    """A calendar (threshold 2) whose first sync committed page 1 and failed on page 2, and
    whose retry failed too: its breaker is open."""
    created = await calendar(stub, sb, threshold=2)
    failing_after_page_one(sb)
    first = await next_attempt(app, clock, stub, created.id)
    assert first.breaker.consecutive_failures == 1 and first.record_count == 2
    integration = await next_attempt(app, clock, stub, created.id)
    assert integration.breaker.state == pb.BREAKER_STATE_OPEN
    return integration


def requests(sb: Sandbox) -> list[tuple[str | None, str]]:
    """(purpose, path) of every Google request since the log was last cleared."""
    return [(e.purpose, e.path) for e in sb.state.log.entries(provider=Provider.GOOGLE)]


async def test_failures_open_the_breaker_at_exactly_the_threshold(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, threshold=3)
    assert created.breaker.threshold == 3
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource=CALENDAR, times=None)

    backoff = [timedelta(seconds=30), timedelta(seconds=60)]  # doubling, minus jitter
    for streak, delay in enumerate(backoff, start=1):
        integration = await next_attempt(app, clock, stub, created.id)
        assert integration.status == pb.STATUS_ERROR
        assert integration.breaker.state == pb.BREAKER_STATE_CLOSED
        assert integration.breaker.consecutive_failures == streak
        retry = moment(integration.breaker.next_attempt_time)
        assert moment(integration.next_sync_time) == retry  # the retry replaces the interval
        assert delay * 0.9 <= retry - clock.now <= delay
        assert integration.last_error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE

    integration = await next_attempt(app, clock, stub, created.id)

    assert integration.status == pb.STATUS_ERROR
    assert integration.breaker.state == pb.BREAKER_STATE_OPEN
    assert integration.breaker.consecutive_failures == 3
    assert moment(integration.breaker.open_time) == clock.now
    history = await events(stub, created.id)
    assert [e.trigger for e in history].count("breaker_opened") == 1
    latest = history[0]
    assert (latest.trigger, latest.from_status, latest.to_status) == (
        "breaker_opened",
        pb.STATUS_ERROR,
        pb.STATUS_ERROR,
    )
    assert "safety brake is on after 3 failures in a row" in latest.reason
    assert latest.error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=created.id))).runs
    assert [(r.trigger, r.outcome) for r in reversed(runs)] == [
        (pb.SYNC_RUN_TRIGGER_SCHEDULED, pb.SYNC_RUN_OUTCOME_FAILED),
        (pb.SYNC_RUN_TRIGGER_RETRY, pb.SYNC_RUN_OUTCOME_FAILED),
        (pb.SYNC_RUN_TRIGGER_RETRY, pb.SYNC_RUN_OUTCOME_FAILED),
    ]


async def test_while_open_the_provider_receives_only_probes_on_a_growing_schedule(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.log.clear()

    clock.now += timedelta(seconds=50)  # before the first probe is due: nothing happens
    assert await sweep(app) == []
    delays = []
    for _ in range(3):
        integration = await next_attempt(app, clock, stub, integration.id)
        delays.append(moment(integration.next_sync_time) - clock.now)
        assert integration.breaker.state == pb.BREAKER_STATE_OPEN

    assert requests(sb) == [("probe", f"/calendar/v3/calendars/{CALENDAR}")] * 3
    for delay, expected in zip(delays, (120, 240, 480), strict=True):  # 1m doubling
        assert timedelta(seconds=expected * 0.9) <= delay <= timedelta(seconds=expected)
    assert integration.breaker.consecutive_failures == 5
    latest = (await events(stub, integration.id))[0]
    assert (latest.trigger, latest.actor) == ("failed", "probe")
    assert "the safety brake stays on, next probe at" in latest.reason


async def test_a_fixed_provider_reactivates_the_integration_which_continues_from_its_cursor(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()  # the provider recovers; nobody touches the integration

    integration = await next_attempt(app, clock, stub, integration.id)  # the probe

    # The probe passing only half-opens the brake: the sync that failed must work first.
    assert integration.status == pb.STATUS_ERROR
    assert integration.breaker.state == pb.BREAKER_STATE_HALF_OPEN
    assert moment(integration.next_sync_time) == clock.now  # the trial sync is due at once
    latest = (await events(stub, integration.id))[0]
    assert (latest.trigger, latest.from_status, latest.to_status, latest.actor) == (
        "probe_succeeded",
        pb.STATUS_ERROR,
        pb.STATUS_ERROR,
        "probe",
    )
    sb.state.log.clear()

    assert len(await sweep(app)) == 1  # the trial sync, from the cursor

    integration = await get(stub, integration.id)
    assert integration.status == pb.STATUS_ACTIVE
    assert integration.breaker.state == pb.BREAKER_STATE_CLOSED
    assert integration.breaker.consecutive_failures == 0
    assert not integration.HasField("last_error")
    latest = (await events(stub, integration.id))[0]
    assert (latest.trigger, latest.from_status, latest.to_status, latest.actor) == (
        "reactivated",
        pb.STATUS_ERROR,
        pb.STATUS_ACTIVE,
        "scheduler",
    )
    assert "reactivated itself" in latest.reason
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=integration.id))).runs
    run = runs[0]
    assert (run.trigger, run.outcome) == (
        pb.SYNC_RUN_TRIGGER_REACTIVATION,
        pb.SYNC_RUN_OUTCOME_SUCCEEDED,
    )
    assert (run.pages, run.records_upserted) == (2, 4)  # pages 2 and 3: from the cursor
    first = sb.state.log.entries(provider=Provider.GOOGLE)[0]
    assert first.purpose == "sync" and "pageToken=" in first.query
    assert await summaries(stub, integration.id) == provider_events(sb.state)
    actors = {e.actor for e in await events(stub, integration.id)}
    assert actors <= {"api", "scheduler", "probe"}  # "api" only for the Create


async def test_a_probe_that_passes_while_the_sync_still_fails_never_flaps_the_brake(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()
    # The cheap check works, the work that failed does not (as with data the service cannot
    # store, or a listing that breaks after its first page).
    sb.state.inject(
        Provider.GOOGLE,
        Fault(FaultKind.SERVER_ERROR, purpose="sync"),
        resource=CALENDAR,
        times=None,
    )
    delays = []
    for _ in range(3):
        integration = await next_attempt(app, clock, stub, integration.id)  # the probe passes
        assert integration.status == pb.STATUS_ERROR
        assert integration.breaker.state == pb.BREAKER_STATE_HALF_OPEN
        integration = await next_attempt(app, clock, stub, integration.id)  # the sync fails
        assert integration.status == pb.STATUS_ERROR
        assert integration.breaker.state == pb.BREAKER_STATE_OPEN
        delays.append(moment(integration.next_sync_time) - clock.now)

    assert delays == sorted(delays) and delays[0] < delays[-1]  # the probes keep slowing down
    history = [e.trigger for e in reversed(await events(stub, integration.id))]
    assert "reactivated" not in history and history.count("breaker_opened") == 1
    assert history[-6:] == ["probe_succeeded", "sync", "failed"] * 2
    latest = (await events(stub, integration.id))[0]
    assert "the probe had passed but the sync still fails" in latest.reason


async def test_pause_stops_everything_including_probes_and_resume_continues_from_the_cursor(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)

    paused = (await stub.Pause(api.PauseRequest(id=integration.id))).integration
    assert paused.status == pb.STATUS_PAUSED and not paused.HasField("next_sync_time")
    assert not paused.HasField("breaker") or not paused.breaker.HasField("next_attempt_time")
    sb.state.log.clear()
    clock.now += timedelta(hours=6)
    assert await sweep(app) == []
    assert requests(sb) == []

    sb.state.clear_faults()
    resumed = (await stub.Resume(api.ResumeRequest(id=integration.id))).integration
    assert resumed.status == pb.STATUS_ACTIVE
    assert resumed.breaker.state == pb.BREAKER_STATE_CLOSED
    assert resumed.breaker.consecutive_failures == 0
    assert len(await sweep(app)) == 1

    run = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=integration.id))).runs[0]
    assert (run.trigger, run.outcome, run.pages) == (
        pb.SYNC_RUN_TRIGGER_REACTIVATION,
        pb.SYNC_RUN_OUTCOME_SUCCEEDED,
        2,
    )
    assert await summaries(stub, integration.id) == provider_events(sb.state)


async def test_a_probe_in_flight_when_paused_changes_nothing(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="probe"), resource=CALENDAR)
    clock.now = moment(integration.next_sync_time)
    [claim] = await app.scheduler.sweep()
    assert claim.probe
    await asyncio.wait_for(sb.state.gates["probe"].wait_for(1), SAFETY)

    await stub.Pause(api.PauseRequest(id=integration.id, reason="investigating"))
    sb.state.gates.open("probe")  # the probe succeeds, but too late
    await asyncio.wait_for(app.scheduler.idle(), SAFETY)

    after = await get(stub, integration.id)
    assert after.status == pb.STATUS_PAUSED
    assert (await events(stub, integration.id))[0].trigger == "pause"


async def test_a_single_5xx_never_trips_the_breaker_even_at_threshold_1(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, threshold=1)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), resource=CALENDAR)

    failed = await next_attempt(app, clock, stub, created.id)

    assert failed.status == pb.STATUS_ERROR
    assert failed.breaker.state == pb.BREAKER_STATE_CLOSED
    assert failed.breaker.consecutive_failures == 1
    recovered = await next_attempt(app, clock, stub, created.id)
    assert recovered.status == pb.STATUS_ACTIVE
    assert recovered.breaker.consecutive_failures == 0
    assert "breaker_opened" not in [e.trigger for e in await events(stub, created.id)]


async def test_at_threshold_1_another_failure_opens_an_active_integration_at_once(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb, threshold=1)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.NOT_FOUND), resource=CALENDAR)

    integration = await next_attempt(app, clock, stub, created.id)

    assert integration.breaker.state == pb.BREAKER_STATE_OPEN
    latest = (await events(stub, created.id))[0]
    assert (latest.trigger, latest.from_status, latest.to_status) == (
        "breaker_opened",
        pb.STATUS_ACTIVE,
        pb.STATUS_ERROR,
    )


async def test_rejected_credentials_disconnect_and_are_never_probed(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    sb.state.datasets.set_dataset(
        "people", [{"id": "p1", "name": "Ada"}], auth=DatasetAuth(AuthKind.API_KEY, secret="k3y")
    )
    created = (
        await stub.Create(
            api.CreateRequest(
                display_name="People",
                connector_type="rest_json",
                config=rest(f"{sb.url}/api/people", id_field="id", records_path="data"),
                credentials=pb.Credentials(api_key="k3y"),
            )
        )
    ).integration
    assert created.status == pb.STATUS_ACTIVE
    sb.state.inject(Provider.REST, Fault(FaultKind.UNAUTHORIZED), times=None)

    integration = await next_attempt(app, clock, stub, created.id)

    assert integration.status == pb.STATUS_DISCONNECTED
    assert integration.last_error.code == pb.ERROR_CODE_INVALID_CREDENTIALS
    assert not integration.HasField("next_sync_time")
    assert integration.breaker.state == pb.BREAKER_STATE_CLOSED
    sb.state.log.clear()
    for _ in range(3):
        clock.now += timedelta(hours=2)
        assert await sweep(app) == []
    assert sb.state.log.entries(provider=Provider.REST) == []


async def test_auth_errors_wait_on_the_probe_schedule_instead_of_fast_retries(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    created = await calendar(stub, sb)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.FORBIDDEN), resource=CALENDAR, times=None)

    first = await next_attempt(app, clock, stub, created.id)
    second = await next_attempt(app, clock, stub, created.id)

    assert first.last_error.code == pb.ERROR_CODE_ACCESS_DENIED
    assert first.breaker.state == second.breaker.state == pb.BREAKER_STATE_CLOSED
    first_wait = moment(first.breaker.next_attempt_time) - moment(first.update_time)
    second_wait = moment(second.breaker.next_attempt_time) - clock.now
    assert timedelta(seconds=54) <= first_wait <= timedelta(minutes=1)  # not 30s
    assert timedelta(seconds=108) <= second_wait <= timedelta(minutes=2)


async def test_retry_after_is_honoured(app: App, clock: FakeClock, stub: Stub, sb: Sandbox) -> None:
    created = await calendar(stub, sb)
    sb.state.inject(
        Provider.GOOGLE, Fault(FaultKind.TOO_MANY_REQUESTS, retry_after=600), resource=CALENDAR
    )

    throttled = await next_attempt(app, clock, stub, created.id)

    assert throttled.last_error.code == pb.ERROR_CODE_RATE_LIMITED
    assert moment(throttled.next_sync_time) - clock.now >= timedelta(seconds=600)
    clock.now += timedelta(seconds=599)
    assert await sweep(app) == []  # not a moment before the provider allows it


@pytest.mark.parametrize("closer", ["TestConnection", "Sync"])
async def test_a_persons_successful_test_or_sync_closes_an_open_breaker(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox, closer: str
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()

    if closer == "TestConnection":
        after = (
            await stub.TestConnection(api.TestConnectionRequest(id=integration.id))
        ).integration
    else:
        after = (await stub.Sync(api.SyncRequest(id=integration.id, wait=True))).integration

    assert after.status == pb.STATUS_ACTIVE
    assert after.breaker.state == pb.BREAKER_STATE_CLOSED
    assert (await events(stub, integration.id))[0].trigger == "reactivated"
    if closer == "TestConnection":  # and the sync from the cursor follows at once
        assert len(await sweep(app)) == 1
    assert await summaries(stub, integration.id) == provider_events(sb.state)


async def test_reauthorize_closes_an_open_breaker_and_a_sync_from_the_cursor_follows(
    app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()

    after = (
        await stub.Reauthorize(api.ReauthorizeRequest(id=integration.id, credentials=bearer()))
    ).integration

    assert after.status == pb.STATUS_ACTIVE
    assert after.breaker.state == pb.BREAKER_STATE_CLOSED
    assert after.breaker.consecutive_failures == 0
    assert moment(after.next_sync_time) == clock.now  # the verification counts as the attempt
    assert len(await sweep(app)) == 1
    run = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=integration.id))).runs[0]
    assert (run.outcome, run.pages) == (pb.SYNC_RUN_OUTCOME_SUCCEEDED, 2)  # from the cursor
    assert await summaries(stub, integration.id) == provider_events(sb.state)


async def test_a_probe_that_hangs_counts_as_a_failure(
    settings: Settings, clock: FakeClock, stub: Stub, sb: Sandbox, app: App
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="never"), resource=CALENDAR)
    # A replica whose probes may take 0.2s: the one real duration in this file, because the
    # timeout is what is being tested.
    impatient = await App.start(
        replace(settings, breaker_probe_timeout=timedelta(seconds=0.2)), clock=clock
    )
    try:
        clock.now = moment(integration.next_sync_time)
        [claim] = await sweep(impatient)
    finally:
        sb.state.gates.open("never")
        await impatient.close()

    after = await get(stub, integration.id)
    assert claim.probe
    assert after.breaker.state == pb.BREAKER_STATE_OPEN
    assert after.breaker.consecutive_failures == 3
    assert after.last_error.code == pb.ERROR_CODE_SERVICE_UNAVAILABLE
    assert "did not answer the probe within 0.2s" in after.last_error.message


async def test_a_second_replica_claims_nothing_an_unexpired_claim_holds(
    settings: Settings, app: App, clock: FakeClock, stub: Stub, sb: Sandbox
) -> None:
    integration = await opened(app, clock, stub, sb)
    sb.state.clear_faults()
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="probe"), resource=CALENDAR)
    other = await App.start(settings, clock=clock)
    try:
        clock.now = moment(integration.next_sync_time)
        [claim] = await app.scheduler.sweep()
        await asyncio.wait_for(sb.state.gates["probe"].wait_for(1), SAFETY)

        assert await other.scheduler.sweep() == []  # one probe at a time, across replicas

        sb.state.gates.open("probe")
        await asyncio.wait_for(app.scheduler.idle(), SAFETY)
    finally:
        await other.close()
    assert claim.probe and claim.integration_id == UUID(integration.id)
    # The one probe passed: the brake is half-open and the trial sync is due.
    assert (await get(stub, integration.id)).breaker.state == pb.BREAKER_STATE_HALF_OPEN
