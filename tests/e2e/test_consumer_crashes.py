"""What consumers of the data rely on, through a kill -9 of the service.

The service runs as its own process (`python -m service`) on the test's database; the test
kills it with SIGKILL in the middle of work, and an in-process service on the same database
(its clock past the dead process's leases) plays the replica that carries on.

- A consumer that reads everything and then follows the change feed ends up with exactly the
  provider's data, through adds, edits, deletes, a 410 full resync and a kill in the middle of
  a sync.
- A webhook delivery whose sender is killed mid-request is delivered after all.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc
from integrations.v1 import webhooks_pb2 as wh

from sandbox import Fault, FaultKind, Provider, Sandbox
from service.app import App
from service.config import Settings
from tests.support.clock import FakeClock
from tests.support.feed import Consumer, kinds
from tests.support.process import ServiceProcess
from tests.support.receiver import Receiver
from tests.support.rpc import Stub
from tests.support.syncing import (
    CALENDAR,
    SANDBOX_DEPLOYMENT,
    bearer,
    committed,
    create,
    google,
    provider_events,
    put_event,
    seed_calendar,
)

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=6)  # three pages of two
        yield sandbox


def service_env(settings: Settings) -> dict[str, str]:
    """The same deployment as the in-process app: database, keys, loopback access, pages."""
    return {
        "DATABASE_URL": settings.database_url,
        "INTEGRATIONS_ENCRYPTION_KEYS": settings.encryption_keys,
        "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true",
        "INTEGRATIONS_SYNC_PAGE_SIZE": str(settings.sync_page_size),
    }


async def synced(stub: Stub, ident: str) -> api.SyncResponse:
    response: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True))
    assert response.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    return response


def copy_of(consumer: Consumer) -> dict[str, str]:
    return {k: v["summary"] for k, v in consumer.copy.items()}


async def test_a_consumer_following_the_feed_holds_the_providers_data_through_a_kill(
    sb: Sandbox, settings: Settings, app: App, clock: FakeClock, stub: Stub
) -> None:
    service = ServiceProcess("--scheduler", "false", env=service_env(settings))
    port = await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            remote = service_pb2_grpc.IntegrationServiceStub(channel)
            ident = (await create(remote, "google_calendar", google(sb), bearer())).id
            consumer = Consumer(remote, ident)
            assert await consumer.read_all() == []
            await synced(remote, ident)
            await consumer.follow()
            assert copy_of(consumer) == provider_events(sb.state)

            # Adds, edits, deletes.
            put_event(sb.state, "e2", "Edited", day=2)
            sb.state.google.delete_event(CALENDAR, "e4")
            put_event(sb.state, "e7", "Added", day=7)
            await synced(remote, ident)
            assert len(await consumer.follow()) == 3
            assert copy_of(consumer) == provider_events(sb.state)

            # A 410 full resync that finds e3 gone without a tombstone.
            sb.state.google.invalidate_sync_tokens(CALENDAR, drop=["e3"])
            assert (await synced(remote, ident)).run.full_resync
            assert kinds(await consumer.follow()) == {("DELETE", "e3")}
            assert copy_of(consumer) == provider_events(sb.state)

            # Another full resync with changes, killed after its first page committed.
            sb.state.google.invalidate_sync_tokens(CALENDAR, drop=["e5"])
            put_event(sb.state, "e1", "Edited before the crash", day=1)
            put_event(sb.state, "e8", "Added before the crash", day=8)
            # Requests: the stale token (410), page 1, then page 2 parked.
            sb.state.gates.open("stale")
            sb.state.gates.open("page-1")
            for gate in ("stale", "page-1", "page-2"):
                sb.state.inject(
                    Provider.GOOGLE, Fault(FaultKind.SLOW, gate=gate), resource=CALENDAR
                )
            await remote.Sync(api.SyncRequest(id=ident))
            await sb.state.gates["page-2"].wait_for(1)
            await committed(remote, ident, pages=1)
            seen_before_the_kill = await consumer.follow()
    finally:
        assert await service.stop(signal.SIGKILL) == -signal.SIGKILL
    sb.state.gates.open("page-2")

    # The feed is consistent with the records the dead process committed: exactly page 1.
    assert kinds(seen_before_the_kill) == {("UPSERT", "e1")}
    consumer.stub = stub
    assert await consumer.follow() == []
    listed = Consumer(stub, ident)
    await listed.read_all()
    assert listed.copy == consumer.copy

    # Another replica takes the dead run over once its lease has run out, and the consumer
    # ends up with exactly the provider's data.
    clock.now = datetime.now(UTC) + settings.sync_lease + timedelta(seconds=1)
    await synced(stub, ident)
    after_the_kill = await consumer.follow()
    assert kinds(after_the_kill) == {("UPSERT", "e8"), ("DELETE", "e5")}
    assert copy_of(consumer) == provider_events(sb.state)
    assert consumer.seen == sorted(set(consumer.seen))


async def test_a_webhook_whose_sender_is_killed_mid_request_still_arrives(
    settings: Settings, app: App, clock: FakeClock, stub: Stub
) -> None:
    async with Receiver() as receiver:
        service = ServiceProcess("--webhook-sweep-interval", "0.05s", env=service_env(settings))
        port = await service.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                remote = service_pb2_grpc.IntegrationServiceStub(channel)
                created = await remote.CreateWebhook(wh.CreateWebhookRequest(url=receiver.url))
                receiver.secrets.append(created.secret)
                release = receiver.hold()
                arrived = receiver.arrived
                await remote.Create(
                    api.CreateRequest(display_name="Orders", connector_type="google_calendar")
                )
                await arrived.wait()  # the process is in the middle of the POST
        finally:
            assert await service.stop(signal.SIGKILL) == -signal.SIGKILL
        release.set()
        [held] = (
            await stub.ListWebhookDeliveries(wh.ListWebhookDeliveriesRequest(id=created.webhook.id))
        ).deliveries
        assert held.state == wh.WEBHOOK_DELIVERY_STATE_PENDING and not held.attempts

        # The killed process's claim runs out; the next sweep of any replica sends it again.
        clock.now = datetime.now(UTC) + settings.webhook_timeout + timedelta(seconds=31)
        assert await app.sender.sweep()
        await app.sender.idle()

        [delivered] = (
            await stub.ListWebhookDeliveries(wh.ListWebhookDeliveriesRequest(id=created.webhook.id))
        ).deliveries
        assert delivered.state == wh.WEBHOOK_DELIVERY_STATE_DELIVERED
        assert [a.status_code for a in delivered.attempts] == [200]
        assert {r.id for r in receiver.received} == {delivered.event_id}
        assert receiver.received[-1].data["integration"]["display_name"] == "Orders"
