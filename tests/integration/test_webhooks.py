"""Webhooks: endpoints managed by RPCs, events delivered signed (Standard Webhooks) from the
outbox, at least once, retried, logged, and an endpoint that keeps failing disabled.

Real PostgreSQL, real gRPC, a real HTTP receiver on 127.0.0.1 that verifies every request with
the `standardwebhooks` package. Time is the test's clock; the sender's sweeps are driven by
hand (`deliver`), so nothing waits on real time.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import grpc
import pytest
from google.protobuf import duration_pb2
from integrations.v1 import service_pb2 as api
from integrations.v1 import webhooks_pb2 as wh

from sandbox import Sandbox
from service.app import App
from service.config import Settings
from service.connectors.http import HttpClient, HttpPolicy
from service.engine.lifecycle_specs import CreateSpec
from service.engine.webhook_sender import WebhookSender
from service.engine.webhooks import EndpointSpec, WebhookEndpoints
from service.rekey import rekey
from service.storage.database import Database
from service.storage.sealing import KeyRing
from tests.support.clock import FakeClock
from tests.support.receiver import Receiver
from tests.support.rpc import Stub, failure
from tests.support.syncing import SANDBOX_DEPLOYMENT, bearer, create, google

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with Receiver() as r:
        yield r


ALL = wh.WebhookEventFilter()


async def create_webhook(
    stub: Stub, receiver: Receiver, *types: wh.WebhookEventType.ValueType
) -> wh.Webhook:
    """A webhook to `receiver`, whose secret the receiver then verifies with."""
    created = await stub.CreateWebhook(
        wh.CreateWebhookRequest(
            url=receiver.url,
            description="dashboard",
            filter=wh.WebhookEventFilter(event_types=list(types)),
        )
    )
    receiver.secrets.append(created.secret)
    return created.webhook


async def deliver(app: App, sender: WebhookSender | None = None) -> int:
    """Sweep until nothing due is left; returns how many attempts were made."""
    sender = sender or app.sender
    attempts = 0
    while claimed := await sender.sweep():
        attempts += len(claimed)
        await sender.idle()
    return attempts


async def log_of(stub: Stub, webhook: wh.Webhook) -> list[wh.WebhookDelivery]:
    return list(
        (
            await stub.ListWebhookDeliveries(wh.ListWebhookDeliveriesRequest(id=webhook.id))
        ).deliveries
    )


async def draft(stub: Stub, name: str = "Orders") -> str:
    created = await stub.Create(
        api.CreateRequest(display_name=name, connector_type="google_calendar")
    )
    return str(created.integration.id)


async def test_a_sync_is_reported_signed_in_order_and_filtered(
    app: App, stub: Stub, sb: Sandbox, receiver: Receiver
) -> None:
    everything = await create_webhook(stub, receiver)
    async with Receiver() as records_only:
        await create_webhook(stub, records_only, wh.WEBHOOK_EVENT_TYPE_RECORDS_CHANGED)
        ident = (await create(stub, "google_calendar", google(sb), bearer())).id
        synced = await stub.Sync(api.SyncRequest(id=ident, wait=True))

        await deliver(app)

        assert receiver.rejected == [] and records_only.rejected == []
        statuses = receiver.of_type("integration.status_changed")
        triggers = [s.data["trigger"] for s in statuses]
        assert triggers[0] == "create" and triggers[-2:] == ["sync", "succeeded"]
        revisions = [s.data["revision"] for s in statuses]
        assert revisions == sorted(set(revisions))
        assert statuses[-1].data["integration"]["status"] == "ACTIVE"
        assert statuses[-1].data["revision"] == synced.integration.revision
        [finished] = receiver.of_type("sync_run.finished")
        run = finished.data["sync_run"]
        assert (run["outcome"], run["pages"], run["records_upserted"]) == ("SUCCEEDED", 2, 3)
        assert finished.data["integration_id"] == ident
        pages = records_only.of_type("records.changed")
        assert [r.type for r in records_only.received] == ["records.changed"] * 2
        assert sorted(i for p in pages for i in p.data["upserted_ids"]) == [
            "e1",
            "e2",
            "e3",
        ]
        assert pages[-1].data["sequence_through"] == 3
        ids = [r.id for r in receiver.received]
        assert len(ids) == len(set(ids))  # one webhook-id per event

    log = await log_of(stub, everything)
    assert len(log) == len(receiver.received)
    assert {d.state for d in log} == {wh.WEBHOOK_DELIVERY_STATE_DELIVERED}
    attempt = log[0].attempts[0]
    assert (attempt.attempt, attempt.status_code, attempt.error) == (1, 200, "")
    assert attempt.HasField("latency") and log[0].HasField("finish_time")


async def test_the_secret_is_shown_once_and_sealed(
    app: App, stub: Stub, receiver: Receiver
) -> None:
    webhook = await create_webhook(stub, receiver)
    secret = receiver.secrets[0]
    assert secret.startswith("whsec_")
    shown = [
        (await stub.GetWebhook(wh.GetWebhookRequest(id=webhook.id))).SerializeToString(),
        (await stub.ListWebhooks(wh.ListWebhooksRequest())).SerializeToString(),
    ]
    assert not any(secret.encode() in s or secret[6:].encode() in s for s in shown)
    [row] = await app.db.fetch("SELECT secret_sealed FROM webhook_endpoints")
    assert secret[6:].encode() not in bytes(row["secret_sealed"])


async def test_a_rotated_secret_signs_beside_the_old_one_for_the_overlap(
    app: App, stub: Stub, receiver: Receiver, clock: FakeClock
) -> None:
    webhook = await create_webhook(stub, receiver, wh.WEBHOOK_EVENT_TYPE_STATUS_CHANGED)
    old = receiver.secrets[0]
    rotated = await stub.RotateWebhookSecret(
        wh.RotateWebhookSecretRequest(
            id=webhook.id, etag=webhook.etag, overlap=duration_pb2.Duration(seconds=3600)
        )
    )
    assert rotated.secret != old and rotated.webhook.HasField("previous_secret_expire_time")

    await draft(stub)  # a receiver that still has only the old secret verifies
    await deliver(app)
    [during] = receiver.received
    assert during.signatures == 2

    receiver.secrets = [old, rotated.secret]
    clock.advance(hours=2)  # the overlap is over: only the new secret signs
    await draft(stub)
    await deliver(app)
    assert receiver.received[-1].signatures == 1
    assert len(receiver.rejected) == 1  # the old secret no longer verifies it


async def test_a_receiver_that_is_down_gets_the_deliveries_once_it_is_back(
    app: App, stub: Stub, receiver: Receiver, clock: FakeClock
) -> None:
    webhook = await create_webhook(stub, receiver)
    await receiver.stop()
    ident = await draft(stub)

    for _ in range(2):  # down: refused, retried later (10 s, then 20 s, less jitter)
        assert await deliver(app) == 1
        [pending] = await log_of(stub, webhook)
        clock.now = pending.next_attempt_time.ToDatetime().replace(tzinfo=clock.now.tzinfo)
    down = (await stub.GetWebhook(wh.GetWebhookRequest(id=webhook.id))).webhook
    assert down.HasField("failing_since") and down.enabled
    await receiver.start()
    assert await deliver(app) == 1

    [received] = receiver.received
    assert received.data["integration_id"] == ident
    [delivered] = await log_of(stub, webhook)
    assert delivered.state == wh.WEBHOOK_DELIVERY_STATE_DELIVERED
    assert [a.status_code for a in delivered.attempts] == [0, 0, 200]
    assert "could not be reached" in delivered.attempts[0].error
    later = delivered.attempts[1].attempt_time.ToDatetime() - (
        delivered.attempts[0].attempt_time.ToDatetime()
    )
    assert timedelta(seconds=8) <= later <= timedelta(seconds=10)
    healthy = (await stub.GetWebhook(wh.GetWebhookRequest(id=webhook.id))).webhook
    assert not healthy.HasField("failing_since")


async def test_an_endpoint_failing_for_days_is_disabled_and_receives_nothing_until_enabled(
    app: App, stub: Stub, receiver: Receiver, clock: FakeClock
) -> None:
    failing = await create_webhook(stub, receiver, wh.WEBHOOK_EVENT_TYPE_STATUS_CHANGED)
    receiver.status = 503
    async with Receiver() as operations:
        await create_webhook(stub, operations, wh.WEBHOOK_EVENT_TYPE_ENDPOINT_DISABLED)
        await draft(stub)
        start = clock.now
        while (log := await log_of(stub, failing))[0].state == wh.WEBHOOK_DELIVERY_STATE_PENDING:
            assert await deliver(app) == 1
            nxt = (await log_of(stub, failing))[0]
            if nxt.HasField("next_attempt_time"):
                clock.now = nxt.next_attempt_time.ToDatetime().replace(tzinfo=clock.now.tzinfo)
        # Retried with backoff for about three days, then given up.
        [given_up] = log
        assert given_up.state == wh.WEBHOOK_DELIVERY_STATE_FAILED
        assert 10 <= len(given_up.attempts) <= 30
        last = given_up.attempts[-1].attempt_time.ToDatetime().replace(tzinfo=start.tzinfo)
        assert timedelta(days=2) < last - start <= timedelta(days=3)
        assert (await stub.GetWebhook(wh.GetWebhookRequest(id=failing.id))).webhook.enabled

        clock.now = start + timedelta(days=5)  # still failing, five days after the first
        await draft(stub, "Second")
        assert await deliver(app) == 2  # the failing endpoint's attempt, then the notice

        disabled = (await stub.GetWebhook(wh.GetWebhookRequest(id=failing.id))).webhook
        assert not disabled.enabled and "HTTP 503" in disabled.disabled_reason
        [notice] = operations.received
        assert notice.type == "webhook.endpoint_disabled"
        assert notice.data["endpoint_id"] == failing.id
        assert notice.data["reason"] == disabled.disabled_reason

        receiver.status = 200
        await draft(stub, "Third")  # not kept for a disabled endpoint
        clock.advance(hours=1)
        assert await deliver(app) == 0
        assert receiver.received == []

        enabled = await stub.UpdateWebhook(
            wh.UpdateWebhookRequest(id=failing.id, etag=disabled.etag, enabled=True)
        )
        assert enabled.webhook.enabled and enabled.webhook.disabled_reason == ""
        await deliver(app)
        assert [r.data["integration"]["display_name"] for r in receiver.received] == ["Second"]


async def test_two_replicas_send_each_delivery_once(
    app: App, stub: Stub, receiver: Receiver
) -> None:
    await create_webhook(stub, receiver, wh.WEBHOOK_EVENT_TYPE_STATUS_CHANGED)
    for n in range(24):
        await draft(stub, f"Integration {n}")
    http = HttpClient.open(HttpPolicy(allow_private_networks=True))
    other = WebhookSender(app.db, http, app.sender.settings, clock=app.clock, worker="replica-2")
    try:
        await asyncio.gather(deliver(app), deliver(app, other))
    finally:
        await http.close()

    ids = [r.id for r in receiver.received]
    assert len(ids) == 24 and len(set(ids)) == 24


async def test_an_attempt_whose_claim_was_taken_over_is_discarded(
    app: App, stub: Stub, receiver: Receiver, clock: FakeClock
) -> None:
    webhook = await create_webhook(stub, receiver, wh.WEBHOOK_EVENT_TYPE_STATUS_CHANGED)
    await draft(stub)
    http = HttpClient.open(HttpPolicy(allow_private_networks=True))
    other = WebhookSender(app.db, http, app.sender.settings, clock=app.clock, worker="replica-2")
    try:
        # The first replica's attempt hangs (and will fail) past its claim; the second takes
        # the delivery over and its attempt succeeds. Both answers then come back.
        receiver.answers = [503, 200]
        release = receiver.hold()
        arrived = receiver.arrived
        assert len(await app.sender.sweep()) == 1
        await asyncio.wait_for(arrived.wait(), 20)
        clock.advance(seconds=app.sender.settings.claim.total_seconds() + 1)
        arrived = receiver.arrived
        assert len(await other.sweep()) == 1
        await asyncio.wait_for(arrived.wait(), 20)
        release.set()
        await app.sender.idle()
        await other.idle()
    finally:
        await http.close()

    # Only the attempt that held the claim counts: one success, no failure in the log, and
    # the endpoint's failing streak never began.
    [delivery] = await log_of(stub, webhook)
    assert delivery.state == wh.WEBHOOK_DELIVERY_STATE_DELIVERED
    assert [(a.attempt, a.status_code) for a in delivery.attempts] == [(1, 200)]
    assert len(receiver.received) == 1
    [row] = await app.db.fetch("SELECT failing_since FROM webhook_endpoints")
    assert row["failing_since"] is None


async def test_another_tenants_events_never_reach_an_endpoint(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    keyed = await App.start(
        replace(settings, api_keys="acme-key-0123456789=acme,globex-key-0123456789=globex"),
        clock=clock,
    )
    try:
        acme = WebhookEndpoints(keyed.db, allow_private_networks=True, clock=clock)
        created = await acme.create("acme", EndpointSpec(url=receiver.url))
        receiver.secrets.append(created.secret)
        for tenant in ("globex", "acme", "globex"):
            await keyed.lifecycle.create(
                tenant, CreateSpec(display_name=f"{tenant} data", connector_type="google_calendar")
            )
        await deliver(keyed)
    finally:
        await keyed.close()

    [only] = receiver.received
    assert only.data["integration"]["display_name"] == "acme data"


async def test_endpoint_urls_get_the_checks_of_connector_urls(
    app: App, stub: Stub, clock: FakeClock
) -> None:
    for url, says in (
        ("ftp://example.com/hooks", "must be an absolute URL with scheme http or https"),
        ("https://user:secret@example.com/hooks", "must not contain a user name or password"),
        ("", "is required"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await stub.CreateWebhook(wh.CreateWebhookRequest(url=url))
        bad = failure(raised.value)
        assert bad.code is grpc.StatusCode.INVALID_ARGUMENT
        assert bad.violations["url"].startswith(says)
    guarded = WebhookEndpoints(app.db, allow_private_networks=False, clock=clock)
    with pytest.raises(Exception) as refused:
        await guarded.create("default", EndpointSpec(url="http://10.0.0.8/hooks"))
    assert "private or local network" in str(refused.value)

    # A name that resolves to a private address passes the syntax check and is stopped by
    # the network guard when the delivery is attempted (nothing is sent anywhere).
    created = await guarded.create("default", EndpointSpec(url="http://localhost:9/hooks"))
    await draft(stub)
    http = HttpClient.open(HttpPolicy(allow_private_networks=False))
    sender = WebhookSender(app.db, http, app.sender.settings, clock=clock, worker="guarded")
    try:
        assert await deliver(app, sender) == 1
    finally:
        await http.close()
    [attempted] = await log_of(stub, wh.Webhook(id=str(created.endpoint.id)))
    assert "private or local network" in attempted.attempts[0].error


async def test_webhooks_are_the_tenants_own_and_need_an_etag_that_is_current(
    stub: Stub, receiver: Receiver
) -> None:
    webhook = await create_webhook(stub, receiver)
    updated = await stub.UpdateWebhook(
        wh.UpdateWebhookRequest(
            id=webhook.id,
            etag=webhook.etag,
            description="billing",
            filter=wh.WebhookEventFilter(event_types=[wh.WEBHOOK_EVENT_TYPE_SYNC_RUN_FINISHED]),
        )
    )
    assert updated.webhook.description == "billing"
    assert list(updated.webhook.event_types) == [wh.WEBHOOK_EVENT_TYPE_SYNC_RUN_FINISHED]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.DeleteWebhook(wh.DeleteWebhookRequest(id=webhook.id, etag=webhook.etag))
    assert failure(raised.value).reason == "ETAG_MISMATCH"
    await stub.DeleteWebhook(wh.DeleteWebhookRequest(id=webhook.id, etag=updated.webhook.etag))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetWebhook(wh.GetWebhookRequest(id=webhook.id))
    assert failure(raised.value).reason == "WEBHOOK_NOT_FOUND"
    assert list((await stub.ListWebhooks(wh.ListWebhooksRequest())).webhooks) == []


async def test_a_key_rotation_reseals_webhook_secrets(
    settings: Settings, clock: FakeClock, receiver: Receiver
) -> None:
    old, new = _ring("2026-01"), _ring("2026-07")
    before = await App.start(replace(settings, encryption_keys=old), clock=clock)
    try:
        created = await before.webhooks.create("default", EndpointSpec(url=receiver.url))
        receiver.secrets.append(created.secret)
    finally:
        await before.close()
    db = await Database.open(settings.database_url, keys=KeyRing.parse(f"{new},{old}"))
    try:
        assert (await rekey(db)).resealed == 1
    finally:
        await db.close()

    after = await App.start(replace(settings, encryption_keys=new), clock=clock)
    try:
        await after.lifecycle.create(
            "default", CreateSpec(display_name="Orders", connector_type="google_calendar")
        )
        assert await deliver(after) == 1
    finally:
        await after.close()
    assert receiver.rejected == [] and len(receiver.received) == 1


def _ring(key_id: str) -> str:
    return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"
