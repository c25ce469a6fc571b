"""A crash in the middle of a sync loses and duplicates nothing.

The service runs as its own process (`python -m service`) against the test's database and the
sandbox. Its sync commits page 1, then asks for page 2, which the sandbox holds behind a gate;
the process is SIGKILLed right there. A sync started afterwards (here by an in-process service
on the same database, once the dead run's lease has run out) takes the run over, continues
from the stored cursor, and the service ends up holding exactly the provider's data.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.app import App
from service.config import Settings
from tests.support.clock import FakeClock
from tests.support.process import ServiceProcess
from tests.support.rpc import Stub
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    committed,
    create,
    get,
    google,
    provider_events,
    put_event,
    records,
    seed_calendar,
    summaries,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=6)  # three pages of two
        yield sandbox


def service_env(settings: Settings) -> dict[str, str]:
    """The same deployment as the in-process app: database, keys, sandbox access, pages."""
    return {
        "DATABASE_URL": settings.database_url,
        "INTEGRATIONS_ENCRYPTION_KEYS": settings.encryption_keys,
        "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true",
        "INTEGRATIONS_SYNC_PAGE_SIZE": str(settings.sync_page_size),
    }


async def test_a_sync_killed_between_pages_is_finished_by_the_next_one(
    sb: Sandbox, settings: Settings, app: App, clock: FakeClock, stub: Stub
) -> None:
    service = ServiceProcess(env=service_env(settings))
    port = await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            remote = service_pb2_grpc.IntegrationServiceStub(channel)
            created = await create(remote, "google_calendar", google(sb), bearer())
            assert created.status == pb.STATUS_ACTIVE
            sb.state.gates.open("page-1")
            sb.state.inject(
                Provider.GOOGLE, Fault(FaultKind.SLOW, gate="page-1"), resource=CALENDAR
            )
            sb.state.inject(
                Provider.GOOGLE, Fault(FaultKind.SLOW, gate="page-2"), resource=CALENDAR
            )
            started = await remote.Sync(api.SyncRequest(id=created.id))
            assert started.run.outcome == pb.SYNC_RUN_OUTCOME_RUNNING
            await sb.state.gates["page-2"].wait_for(1)
            await committed(remote, created.id, pages=1)
    finally:
        assert await service.stop(signal.SIGKILL) == -signal.SIGKILL

    ident = UUID(created.id)
    [orphan] = await app.syncs.runs("default", ident, before_seq=None, limit=10)
    assert orphan.running and orphan.pages == 1
    assert len(await records(stub, created.id)) == 2  # page 1, exactly once
    assert (await get(stub, created.id)).sync_state == pb.SYNC_STATE_SYNCING
    sb.state.gates.open("page-2")  # the dead process's request goes nowhere

    # The dead run's lease (written with the real clock) runs out; a new Sync takes over.
    clock.now = datetime.now(UTC) + settings.sync_lease + timedelta(seconds=1)
    resumed = await stub.Sync(api.SyncRequest(id=created.id, wait=True))

    run = resumed.run
    assert run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    assert (run.pages, run.records_upserted) == (2, 4)  # pages 2 and 3, from the cursor
    queries = [
        e.query
        for e in sb.state.log.entries(provider=Provider.GOOGLE)
        if e.path.endswith("/events")
    ]
    assert "pageToken=" in queries[-2]
    assert await summaries(stub, created.id) == provider_events(sb.state)
    assert resumed.integration.record_count == 6
    assert resumed.integration.sync_state == pb.SYNC_STATE_SYNCED
    runs = (await stub.ListSyncRuns(api.ListSyncRunsRequest(id=created.id))).runs
    assert [(r.id, r.outcome) for r in runs] == [
        (run.id, pb.SYNC_RUN_OUTCOME_SUCCEEDED),
        (str(orphan.id), pb.SYNC_RUN_OUTCOME_CANCELLED),
    ]
    stored = await app.db.fetchrow(
        "SELECT count(*) AS n, count(DISTINCT record_id) AS ids "
        "FROM records WHERE tenant_id = 'default' "
        "AND integration_id = $1",
        ident,
    )
    assert stored is not None and stored["n"] == stored["ids"] == 6

    # And the sync after it is incremental again, with nothing lost in between.
    sb.state.google.delete_event(CALENDAR, "e1")
    put_event(sb.state, "e7", "After the crash", day=7)
    after = await stub.Sync(api.SyncRequest(id=created.id, wait=True))
    assert not after.run.full_resync
    assert await summaries(stub, created.id) == provider_events(sb.state)
    assert after.integration.record_count == 6
