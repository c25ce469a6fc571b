"""Two replicas (an App and a Server each, with their own pools and LISTEN connections) on one
database: changes written through either reach subscribers on both."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from uuid import UUID

import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.watch import StatusWatch

from service.api.server import Server
from service.app import App
from service.config import Settings
from service.domain.status import TRANSITIONS, Status
from service.engine.lifecycle import ConfigureSpec
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.watch import Recorder, database_view, messages_of, view_of

CHANGES_PER_WRITER = 125
WRITERS_PER_REPLICA = 4  # 2 replicas x 4 writers x 125 = 1,000 changes


# Filtered subscribers learn they are at the head from heartbeats: make them frequent.
pytestmark = pytest.mark.settings(watch_heartbeat_interval=timedelta(milliseconds=100))


@pytest.fixture
async def replica(settings: Settings, clock: FakeClock) -> AsyncIterator[tuple[App, Stub]]:
    """A second replica of the service on the same database."""
    other = await App.start(settings, clock=clock)
    server = Server(other)
    port = await server.start("127.0.0.1:0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield other, Stub(channel)
    await server.stop(grace=1)
    await other.close()


class Writer:
    """Makes random changes to integrations of its own through one replica: creates,
    renames, status transitions of every kind, deletions. (Creates and deletions go through
    gRPC; the rest through the replica's engine, as its background work would, so no
    connection test runs against a real provider.)"""

    def __init__(self, app: App, stub: Stub, seed: int) -> None:
        self.app, self.stub = app, stub
        self.rng = random.Random(seed)
        self.owned: dict[str, Status] = {}

    async def run(self, changes: int) -> None:
        for n in range(changes):
            await self.step(n)

    async def step(self, n: int) -> None:
        if len(self.owned) < 3:
            created = await self.stub.Create(
                api.CreateRequest(
                    display_name=f"w{n}",
                    connector_type=self.rng.choice(["google_calendar", "ics_feed", "rest_json"]),
                )
            )
            self.owned[created.integration.id] = Status.DRAFT
            return
        ident = self.rng.choice(sorted(self.owned))
        roll = self.rng.random()
        if roll < 0.05:
            await self.stub.Delete(api.DeleteRequest(id=ident))
            del self.owned[ident]
        elif roll < 0.3:
            await self.app.lifecycle.configure(
                "default", UUID(ident), "", ConfigureSpec(display_name=f"r{n}")
            )
        else:
            status = self.owned[ident]
            triggers = sorted(
                (t for (s, t), to in TRANSITIONS.items() if s is status and to is not None),
                key=lambda t: t.value,
            )
            changed = await self.app.lifecycle.change(
                "default",
                UUID(ident),
                self.rng.choice(triggers),
                actor="writer",
                reason=f"step {n}",
            )
            self.owned[ident] = changed.status


async def test_a_thousand_changes_through_two_replicas_reach_every_subscriber(
    app: App, stub: Stub, replica: tuple[App, Stub]
) -> None:
    other, other_stub = replica
    selected = (pb.STATUS_ACTIVE, pb.STATUS_PAUSED)
    subscribers = {
        "a: everything": Recorder(stub.WatchStatus(api.WatchStatusRequest())),
        "a: active or paused": Recorder(
            stub.WatchStatus(api.WatchStatusRequest(statuses=selected)), statuses=selected
        ),
        "b: everything": Recorder(other_stub.WatchStatus(api.WatchStatusRequest())),
        "b: ics feeds": Recorder(
            other_stub.WatchStatus(api.WatchStatusRequest(connector_type="ics_feed"))
        ),
    }
    for subscriber in subscribers.values():
        await subscriber.until_snapshot()
    client = StatusWatch(other_stub)
    client_messages = messages_of(client)

    writers = [Writer(app, stub, seed) for seed in range(WRITERS_PER_REPLICA)]
    writers += [Writer(other, other_stub, 100 + seed) for seed in range(WRITERS_PER_REPLICA)]
    await asyncio.gather(*(w.run(CHANGES_PER_WRITER) for w in writers))

    async with app.db.raw() as conn:
        head = await conn.fetchval("SELECT revision FROM tenant_revisions")
        kept = [
            r["revision"] for r in await conn.fetch("SELECT revision FROM events ORDER BY revision")
        ]
    assert head >= WRITERS_PER_REPLICA * 2 * CHANGES_PER_WRITER

    truth = await database_view(app)
    for name, subscriber in subscribers.items():
        await subscriber.until_revision(head, timeout=30)
        revisions = subscriber.revisions
        assert revisions == sorted(set(revisions)), f"{name}: out of order or repeated"
        if name.endswith("everything"):
            # Every event still in the table; the others belonged to integrations deleted
            # before the subscriber read them, whose tombstones it did get.
            assert set(kept) <= set(revisions), name
            assert view_of(subscriber.view) == truth, name
    assert view_of(subscribers["a: active or paused"].view) == {
        i: v for i, v in truth.items() if v[0] in selected
    }
    ics = {
        str(r["id"])
        for r in await app.db.fetch("SELECT id FROM integrations WHERE connector_type = 'ics_feed'")
    }
    assert view_of(subscribers["b: ics feeds"].view) == {i: v for i, v in truth.items() if i in ics}

    async with asyncio.timeout(10):
        while client.revision < head:
            await anext(client_messages)
    await client_messages.aclose()
    assert view_of(client.view) == truth
    for subscriber in subscribers.values():
        await subscriber.stop()
