"""Push at its edges: channel secrets at rest and through a key rotation, notifications for
channels that are gone, watches the provider refuses, and notifications during a sync.

The same deployment as test_push (the callback listener is the channels' address, the sandbox
shares the test's clock, sweeps run by hand).
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import aiohttp
import grpc
import pytest
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from sandbox import Sandbox
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.push import PushChannel
from sandbox.traffic import PURPOSE_HEADER
from service.api.server import Server
from service.app import App
from service.config import Settings
from service.domain.credentials import SignIn
from service.rekey import rekey
from service.storage.database import Database
from service.storage.sealing import KeyRing
from tests.integration.test_push import (
    SAFETY,
    counted,
    create,
    live,
    moment,
    notified,
    pushing,
    sb,
    settings,
    sweep,
)
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.syncing import CALENDAR, TOKEN, bearer, events, get, put_event, summaries

__all__ = ["sb", "settings"]  # the fixtures this module shares with test_push


def ring(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"


@asynccontextmanager
async def serving(settings: Settings, clock: FakeClock) -> AsyncIterator[tuple[App, Stub]]:
    """The service with `settings`, on a real socket."""
    app = await App.start(settings, clock=clock)
    server = Server(app)
    await server.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            yield app, service_pb2_grpc.IntegrationServiceStub(channel)
    finally:
        await server.stop(grace=1)
        await app.close()


async def test_a_rekey_reseals_channel_tokens_kept_credentials_and_sign_ins(
    settings: Settings, sb: Sandbox, clock: FakeClock
) -> None:
    old, new = ring("2026-01"), ring("2026-07")
    async with serving(replace(settings, encryption_keys=old), clock) as (app, stub):
        ident = await pushing(app, stub, sb)
        [channel] = live(sb)
        # Another account's credentials: the channel keeps the old ones for its stop, which
        # has not run yet. (Credentials are told apart by when they were set.)
        clock.advance(minutes=1)
        sb.state.add_access_token("another", expires_in=30 * 86400, account="b@example.com")
        await stub.Reauthorize(api.ReauthorizeRequest(id=ident, credentials=bearer("another")))
        integration = await app.lifecycle.get("default", UUID(ident))
        sign_in = SignIn(
            tenant_id="default",
            integration_id=integration.id,
            provider="google",
            verifier="verifier-canary-0b1e" * 3,
            redirect_uri="https://integrations.example.com/oauth/callback",
            return_url="",
            scopes=("calendar.readonly",),
            created_at=clock.now,
            expires_at=clock.now + timedelta(minutes=10),
        )
        async with app.db.transaction() as tx:
            await tx.sign_ins.insert(b"state-digest", sign_in)
        [row] = await app.db.fetch(
            "SELECT token_sealed, orphan_credentials FROM push_channels WHERE channel_id = $1",
            channel.id,
        )
        assert channel.token and channel.token.encode() not in bytes(row["token_sealed"])
        assert row["orphan_credentials"] is not None
        assert TOKEN.encode() not in bytes(row["orphan_credentials"])

    db = await Database.open(settings.database_url, keys=KeyRing.parse(f"{new},{old}"))
    try:
        # 1 credentials, 1 channel (token and kept credentials), 1 sign-in.
        assert (await rekey(db)).resealed == 3
        assert (await rekey(db)).resealed == 0
    finally:
        await db.close()

    async with serving(replace(settings, encryption_keys=new), clock) as (app, stub):
        async with app.db.transaction() as tx:
            found = await tx.channels.find("default", channel.id)
            taken = await tx.sign_ins.take("default", b"state-digest")
        assert found is not None and found.token == channel.token
        assert taken is not None and taken.verifier == sign_in.verifier
        # The stop is authorised by the kept (old account's) credentials, opened with the new
        # key alone.
        await sweep(app)
        assert sb.state.push.stopped == [channel.id]
        assert (await stub.Get(api.GetRequest(id=ident))).integration.push.state == (
            pb.PUSH_STATE_ACTIVE
        )


def genuine(channel: PushChannel, state: str = "exists") -> dict[str, str]:
    """The headers Google sends for `channel`."""
    return {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Token": channel.token or "",
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-State": state,
        "X-Goog-Message-Number": "7",
    }


async def runs(stub: Stub, ident: str) -> int:
    listed = await stub.ListSyncRuns(api.ListSyncRunsRequest(id=ident, page_size=100))
    return len(listed.runs)


async def test_notifications_of_a_replaced_channel_are_acknowledged_and_sync_nothing(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    clock.advance(days=7, minutes=-59)
    await app.push.check("default", UUID(ident))  # renewed: the old one retired, not stopped
    await sweep(app)  # the overdue safety-net poll; the old channel's stop
    before, synced = await get(stub, ident), await runs(stub, ident)
    url = f"{app.settings.public_url}/push/default"

    async with aiohttp.ClientSession() as http:
        # Retired and stopped: Google may still deliver what it sent before the stop. A 2xx
        # tells it the message arrived (anything else is retried), and nothing syncs.
        assert sb.state.push.stopped == [old.id]
        unknown = counted("unknown")
        async with http.post(url, headers=genuine(old)) as response:
            assert response.status == 200
        assert counted("unknown") == unknown + 1

    after = await get(stub, ident)
    assert after.next_sync_time == before.next_sync_time
    assert moment(after.next_sync_time) == clock.now + timedelta(hours=6)
    await sweep(app)
    assert await runs(stub, ident) == synced


async def test_a_notification_of_a_retired_channel_not_yet_stopped_syncs_nothing(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    clock.advance(days=7, minutes=-59)
    await app.push.check("default", UUID(ident))  # the new channel; the old one retired
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE))  # the next request: its stop
    await app.push.reconcile()  # the stop fails: retried later
    assert old in live(sb) and sb.state.push.stopped == []
    await app.scheduler.sweep()
    await app.scheduler.idle()  # the overdue poll
    before, synced = await get(stub, ident), await runs(stub, ident)

    stopped = counted("stopped")
    async with aiohttp.ClientSession() as http:
        url = f"{app.settings.public_url}/push/default"
        async with http.post(url, headers=genuine(old)) as response:
            assert response.status == 200
    assert counted("stopped") == stopped + 1
    assert (await get(stub, ident)).next_sync_time == before.next_sync_time
    await app.push.reconcile()  # its notification made its stop due at once
    assert sb.state.push.stopped == [old.id]
    await app.scheduler.sweep()
    await app.scheduler.idle()
    assert await runs(stub, ident) == synced


@pytest.mark.parametrize(
    ("refusal", "says"),
    [
        ("not supported", "this calendar does not support push notifications"),
        ("quota", "quota"),
    ],
)
async def test_a_watch_the_provider_refuses_falls_back_to_polling_and_says_why(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object, refusal: str, says: str
) -> None:
    ident = await create(stub, sb)
    await app.scheduler.sweep()
    await app.scheduler.idle()  # the first sync: now the channel is wanted
    if refusal == "quota":
        fault = Fault(FaultKind.QUOTA, reason="quotaExceeded")
        sb.state.inject(Provider.GOOGLE, fault, resource=CALENDAR)
    else:
        sb.state.push.faults.refuse.append("pushNotSupportedForRequestedResource")
    await app.push.reconcile()

    shown = await get(stub, ident)
    assert shown.push.state == pb.PUSH_STATE_UNAVAILABLE
    assert says in shown.push.reason.lower()
    assert moment(shown.push.retry_time) == clock.now + timedelta(hours=1)
    assert moment(shown.next_sync_time) > clock.now  # it polls on its own interval
    assert moment(shown.next_sync_time) <= clock.now + timedelta(minutes=15)
    [event] = (await events(stub, ident))[:1]
    assert event.trigger == "push_unavailable" and shown.push.reason in event.reason
    assert not live(sb)

    stream = stub.WatchStatus(api.WatchStatusRequest(ids=[ident]))
    try:
        first = await asyncio.wait_for(stream.read(), SAFETY)
    finally:
        stream.cancel()
    assert isinstance(first, api.WatchStatusResponse)
    assert first.snapshot.push == shown.push


async def test_a_notification_during_a_sync_makes_exactly_one_sync_after_it(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    before = await runs(stub, ident)
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.SLOW, gate="list"), resource=CALENDAR)
    started = await stub.Sync(api.SyncRequest(id=ident))  # it stands still on its listing
    await asyncio.wait_for(sb.state.gates["list"].wait_for(1), SAFETY)

    delivered = len(sb.state.push.deliveries)
    put_event(sb.state, "e5", "During the sync")
    put_event(sb.state, "e6", "Also during it")
    await notified(sb, delivered + 2)
    assert all(d.status == 200 for d in sb.state.push.deliveries)
    sb.state.gates.open("list")
    # The person's run is not the scheduler's: wait for it to end, not for the scheduler.
    await app.syncs.wait(await app.syncs.get_run("default", UUID(started.run.id)))

    running_one = await get(stub, ident)
    assert moment(running_one.next_sync_time) <= clock.now  # due again at once
    await sweep(app)
    await sweep(app)
    assert await runs(stub, ident) == before + 2  # the person's sync, then exactly one more
    assert (await summaries(stub, ident))["e6"] == "Also during it"
    idle = await get(stub, ident)
    assert moment(idle.next_sync_time) == clock.now + timedelta(hours=6)


@pytest.mark.settings(purpose_header=PURPOSE_HEADER)
async def test_a_sync_that_ends_while_the_channel_opens_keeps_that_channel(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    ident = await create(stub, sb)
    await app.scheduler.sweep()
    await app.scheduler.idle()  # the first sync: now the channel is wanted
    hold = Fault(FaultKind.SLOW, gate="watch", purpose="push")
    sb.state.inject(Provider.GOOGLE, hold, resource=CALENDAR)
    opening = asyncio.create_task(app.push.reconcile())
    await asyncio.wait_for(sb.state.gates["watch"].wait_for(1), SAFETY)

    synced = await stub.Sync(api.SyncRequest(id=ident, wait=True))  # ends meanwhile
    assert synced.run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED
    sb.state.gates.open("watch")
    await asyncio.wait_for(opening, SAFETY)
    await app.push.reconcile()

    # The sync's end marked a look at push, which finds the new channel and keeps it: one
    # watch at the provider, none stopped (it used to be stopped and a second one opened).
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE
    assert [c.id for c in live(sb)] == list(sb.state.push.channels)
    assert len(sb.state.push.channels) == 1 and sb.state.push.stopped == []
