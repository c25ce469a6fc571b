"""Push channels against the sandbox's Google: opened after the first sync, notifications
that sync at once, renewal with no gap, stops on Pause, Delete and a new configuration, the
fallback to polling and the recovery of push, and forged notifications ignored.

The service's callback listener is the channels' address (plain http on loopback, which the
sandbox allows); the sandbox and the service share the test's clock, and sweeps are run by
hand, so nothing here waits on real time but for notifications in flight.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import UUID

import aiohttp
import pytest
from google.protobuf import duration_pb2
from google.protobuf.timestamp_pb2 import Timestamp
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from prometheus_client import REGISTRY

from sandbox import Sandbox, SandboxState
from sandbox.push import PushChannel
from service.app import App
from service.config import Settings
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.syncing import (
    CALENDAR,
    TOKEN,
    bearer,
    events,
    get,
    google,
    put_event,
    seed_calendar,
    summaries,
)

SAFETY = 20.0


def free_port() -> int:
    """A port nobody listens on now (the callback binds it at once, with SO_REUSEADDR)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def settings(settings: Settings) -> Settings:
    port = free_port()
    # The callback's port is only known now, so this module cannot use the settings marker.
    return replace(
        settings,
        allow_private_networks=True,
        public_url=f"http://127.0.0.1:{port}",
        callback_listen=f"127.0.0.1:{port}",
        push_coalesce_window=timedelta(0),
        schedule_jitter=0.0,
        sync_page_size=50,
    )


@pytest.fixture
async def sb(clock: FakeClock) -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxState(clock=clock)) as sandbox:
        seed_calendar(sandbox.state, events=2)
        sandbox.state.add_access_token(TOKEN, expires_in=30 * 86400)  # the tests move days on
        yield sandbox


async def sweep(app: App) -> None:
    """One sweep of the loop, in a fixed order: due syncs (run to their end), then channels.
    (`Scheduler.sweep` reconciles beside the syncs it starts, as the loop does, so a channel
    could be opened while a sync that changes what it should be is still running.)"""
    await app.scheduler.claim()
    await app.scheduler.idle()
    await app.scheduler.late.notice()
    await app.push.reconcile()


async def create(stub: Stub, sb: Sandbox, calendar_id: str = CALENDAR) -> str:
    response = await stub.Create(
        api.CreateRequest(
            display_name="Team calendar",
            connector_type="google_calendar",
            config=google(sb, calendar_id),
            credentials=bearer(),
            sync_interval=duration_pb2.Duration(seconds=15 * 60),
        )
    )
    assert response.integration.status == pb.STATUS_ACTIVE
    return response.integration.id


async def pushing(app: App, stub: Stub, sb: Sandbox) -> str:
    """An integration synced once, its channel open and its catch-up sync done."""
    ident = await create(stub, sb)
    await sweep(app)  # the first sync; it marks the channel for a look, which opens it
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE
    await sweep(app)  # the catch-up sync, for changes made before the channel
    return ident


def live(sb: Sandbox) -> list[PushChannel]:
    return sb.state.push.live(CALENDAR)


async def notified(sb: Sandbox, count: int) -> None:
    """Wait until `count` notifications were sent (and answered) in all."""
    await asyncio.wait_for(sb.state.push.delivered(count), SAFETY)


def moment(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def counted(outcome: str) -> float:
    value = REGISTRY.get_sample_value("integrations_push_notifications_total", {"outcome": outcome})
    return value or 0.0


async def test_a_sync_of_a_type_that_cannot_push_leaves_nothing_for_the_reconciler(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    sb.state.feeds.set_feed("team", [])
    feed = await stub.Create(
        api.CreateRequest(
            display_name="Feed",
            connector_type="ics_feed",
            config=pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url=f"{sb.url}/ics/team.ics")),
        )
    )
    google_calendar = await create(stub, sb)
    await app.push.reconcile()  # the looks their creation asked for
    await app.scheduler.claim()
    await app.scheduler.idle()
    marked = await app.db.fetch("SELECT id FROM integrations WHERE push_check_at IS NOT NULL")
    # The calendar's first sync asks for a channel; the feed's would be a write per sync that
    # the reconciler could only clear.
    assert [str(r["id"]) for r in marked] == [google_calendar]
    assert (await get(stub, feed.integration.id)).push.state == pb.PUSH_STATE_OFF


async def test_a_change_syncs_on_its_notification_without_waiting_for_a_poll(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await create(stub, sb)
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_OFF  # not synced yet
    await sweep(app)

    shown = await get(stub, ident)
    assert shown.push.state == pb.PUSH_STATE_ACTIVE
    assert moment(shown.push.expire_time) == clock.now + timedelta(days=7)
    [channel] = live(sb)
    assert channel.address == f"{app.settings.public_url}/push/default"
    assert len(channel.id) <= 64 and channel.token and len(channel.token) >= 32
    await notified(sb, 1)
    assert [(d.state, d.status) for d in sb.state.push.deliveries] == [("sync", 200)]
    history = await events(stub, ident)
    assert history[0].trigger == "push_active" and "every 6h" in history[0].reason

    await sweep(app)  # the catch-up sync after the gap; then only the safety net polls
    idle = await get(stub, ident)
    assert moment(idle.next_sync_time) == clock.now + timedelta(hours=6)
    assert not idle.late

    # Two changes, their notifications out of order (message numbers 3 then 2): one sync.
    sb.state.push.faults.reorder = True
    put_event(sb.state, "e8", "Planning")
    put_event(sb.state, "e9", "Review")
    await notified(sb, 3)
    assert [d.number for d in sb.state.push.deliveries[1:]] == [3, 2]
    assert all(d.status == 200 for d in sb.state.push.deliveries)
    due = await get(stub, ident)
    assert moment(due.next_sync_time) == clock.now  # due now, not in 6 hours
    await sweep(app)
    assert (await summaries(stub, ident))["e9"] == "Review"
    assert (await summaries(stub, ident))["e8"] == "Planning"
    after = await get(stub, ident)
    assert after.push.state == pb.PUSH_STATE_ACTIVE
    assert moment(after.next_sync_time) == clock.now + timedelta(hours=6)


async def test_renewal_opens_the_new_channel_before_it_stops_the_old(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    clock.advance(days=7, minutes=-59)  # within an hour of its expiration
    sb.state.log.clear()
    await app.push.reconcile()

    [new] = live(sb)
    assert new.id != old.id and sb.state.push.stopped == [old.id]
    calls = [(e.method, e.path.rsplit("/", 2)[-2:]) for e in sb.state.log]
    assert calls == [("POST", ["events", "watch"]), ("POST", ["channels", "stop"])]
    shown = await get(stub, ident)
    assert moment(shown.push.expire_time) == clock.now + timedelta(days=7)
    assert (await events(stub, ident))[0].trigger == "push_renewed"

    scheduled = counted("scheduled")
    put_event(sb.state, "e7", "After renewal")
    await notified(sb, 3)  # the two channels' sync messages, then the change
    assert counted("scheduled") == scheduled + 1


async def test_pause_stops_the_channel_resume_opens_one_and_delete_stops_it(
    app: App, stub: Stub, sb: Sandbox, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [first] = live(sb)
    paused = await stub.Pause(api.PauseRequest(id=ident))
    await app.push.reconcile()
    assert sb.state.push.stopped == [first.id] and not live(sb)
    shown = await get(stub, ident)
    assert shown.push.state == pb.PUSH_STATE_OFF and shown.etag != paused.integration.etag

    await stub.Resume(api.ResumeRequest(id=ident))
    await sweep(app)
    [second] = live(sb)
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE

    await stub.Delete(api.DeleteRequest(id=ident))
    await app.push.reconcile()
    assert sb.state.push.stopped == [first.id, second.id]
    assert await app.db.fetch("SELECT * FROM push_channels") == []


async def test_a_new_configuration_stops_the_old_channel_and_watches_the_new_calendar(
    app: App, stub: Stub, sb: Sandbox, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    seed_calendar(sb.state, events=1, calendar_id="other")
    await stub.Configure(api.ConfigureRequest(id=ident, config=google(sb, "other")))
    await app.push.reconcile()
    assert sb.state.push.stopped == [old.id]
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_OFF

    await sweep(app)  # the first sync of the new calendar, then its channel
    [new] = sb.state.push.live()
    assert new.calendar_id == "other"
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE


async def test_another_accounts_credentials_replace_the_channel_stopped_as_its_opener(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    assert old.owner == "owner@example.com"
    clock.advance(minutes=1)
    other = "other@example.com"
    sb.state.add_access_token("another-account", expires_in=30 * 86400, account=other)
    await stub.Reauthorize(api.ReauthorizeRequest(id=ident, credentials=bearer("another-account")))
    await sweep(app)
    # Only the account that opened a channel can stop it: the old one's credentials did.
    [new] = live(sb)
    assert new.id != old.id and new.owner == other and sb.state.push.stopped == [old.id]
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE
    kept = "SELECT 1 FROM push_channels WHERE orphan_credentials IS NOT NULL"
    assert await app.db.fetch(kept) == []  # the copy went with the stopped channel


async def test_a_channel_whose_replaced_credentials_were_revoked_is_left_to_expire(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [old] = live(sb)
    clock.advance(minutes=1)
    other = "other@example.com"
    sb.state.add_access_token("another-account", expires_in=30 * 86400, account=other)
    await stub.Reauthorize(api.ReauthorizeRequest(id=ident, credentials=bearer("another-account")))
    sb.state.oauth.revoke(TOKEN)  # the old account's token no longer works anywhere
    sb.state.log.clear()
    await sweep(app)

    # One refused stop with the old token, none with the new account's, and not retried.
    stops = [e for e in sb.state.log if e.path.endswith("/channels/stop")]
    assert [e.status for e in stops] == [401] and sb.state.push.stopped == []
    assert old in live(sb)  # it ends at its expiration; its notifications are ignored
    rows = await app.db.fetch("SELECT channel_id FROM push_channels")
    assert [r["channel_id"] for r in rows] == [c.id for c in live(sb) if c.owner == other]
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE


async def test_a_refused_watch_leaves_the_integration_polling_and_push_is_retried_later(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    sb.state.push.faults.refuse.append("push.webhookUrlNotHttps")
    ident = await create(stub, sb)
    await sweep(app)

    shown = await get(stub, ident)
    assert shown.push.state == pb.PUSH_STATE_UNAVAILABLE
    assert "not HTTPS" in shown.push.reason
    assert moment(shown.push.retry_time) == clock.now + timedelta(hours=1)
    assert moment(shown.next_sync_time) == clock.now + timedelta(minutes=15)
    assert (await events(stub, ident))[0].trigger == "push_unavailable"

    clock.advance(hours=1)
    await app.push.reconcile()
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE


@pytest.mark.parametrize("fault", ["dropped", "expired early"])
async def test_changes_the_safety_net_finds_unannounced_fail_push_until_it_recovers(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object, fault: str
) -> None:
    ident = await pushing(app, stub, sb)
    [channel] = live(sb)
    if fault == "dropped":
        sb.state.push.faults.drop = None
    else:
        sb.state.push.expire(channel.id)
    put_event(sb.state, "e5", "Nobody told us")
    clock.advance(hours=6)  # the safety net's poll
    await sweep(app)

    shown = await get(stub, ident)
    assert (await summaries(stub, ident))["e5"] == "Nobody told us"
    assert shown.push.state == pb.PUSH_STATE_UNAVAILABLE
    assert "no notification announced" in shown.push.reason
    assert moment(shown.next_sync_time) == clock.now + timedelta(minutes=15)
    [succeeded] = [e for e in await events(stub, ident) if e.trigger == "succeeded"][:1]
    assert "push reported failed" in succeeded.reason
    assert not live(sb)  # the untrusted channel was stopped (or had died)

    sb.state.push.faults.drop = 0
    clock.advance(hours=1)
    await sweep(app)
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE
    assert len(live(sb)) == 1


async def test_the_safety_brake_stops_the_channel_and_reactivation_opens_one(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    await stub.Configure(api.ConfigureRequest(id=ident, breaker_threshold=1))
    sb.state.google.remove_calendar(CALENDAR)  # 404: the brake opens at once
    await stub.Sync(api.SyncRequest(id=ident, wait=True))
    await app.push.reconcile()
    assert (await get(stub, ident)).breaker.state == pb.BREAKER_STATE_OPEN
    assert not live(sb) and sb.state.push.stopped
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_OFF

    seed_calendar(sb.state, events=2)
    await stub.Sync(api.SyncRequest(id=ident, wait=True))  # a person's sync reactivates it
    await app.push.reconcile()
    assert (await get(stub, ident)).push.state == pb.PUSH_STATE_ACTIVE


async def test_forged_unknown_and_stale_notifications_are_acknowledged_and_ignored(
    app: App, stub: Stub, sb: Sandbox, clock: FakeClock, server: object
) -> None:
    ident = await pushing(app, stub, sb)
    [channel] = live(sb)
    before = await get(stub, ident)
    genuine = {
        "X-Goog-Channel-ID": channel.id,
        "X-Goog-Channel-Token": channel.token or "",
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": "9",
    }
    url = f"{app.settings.public_url}/push/default"
    forgeries = {
        "forged": [
            {**genuine, "X-Goog-Channel-Token": "guessed"},
            {**genuine, "X-Goog-Resource-ID": "another-calendar"},
            {k: v for k, v in genuine.items() if k != "X-Goog-Channel-Token"},
        ],
        "unknown": [{**genuine, "X-Goog-Channel-ID": "ch-unknown"}],
    }
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{app.settings.public_url}/push/acme", headers=genuine) as other:
            assert other.status == 200  # the channel is not that tenant's
        for outcome, attempts in forgeries.items():
            counts = counted(outcome)
            for headers in attempts:
                async with http.post(url, headers=headers) as response:
                    assert response.status == 200
            assert counted(outcome) == counts + len(attempts)
        assert (await get(stub, ident)).next_sync_time == before.next_sync_time

        clock.advance(days=8)  # the channel expired (its renewal never ran)
        expired = counted("expired")
        async with http.post(url, headers=genuine) as response:
            assert response.status == 200
        assert counted("expired") == expired + 1

        clock.advance(days=-8)
        scheduled = counted("scheduled")
        async with http.post(url, headers=genuine) as response:
            assert response.status == 200
        assert counted("scheduled") == scheduled + 1
    assert moment((await get(stub, ident)).next_sync_time) == clock.now


async def test_the_sandbox_refuses_plain_http_addresses_off_this_machine(
    app: App, stub: Stub, sb: Sandbox
) -> None:
    from service.connectors.base import PushConnector, PushRefused, WatchRequest

    ident = await create(stub, sb)
    integration = await app.lifecycle.get("default", UUID(ident))
    connector, source = await app.providers.open(integration)
    assert isinstance(connector, PushConnector)
    request = WatchRequest(
        "ch-1", "secret", "http://integrations.example.com/push/default", datetime.now(UTC)
    )
    with pytest.raises(PushRefused, match="not HTTPS"):
        await connector.watch(source, request)
    assert not await connector.stop_channel(source, "ch-1", "unknown-resource")
