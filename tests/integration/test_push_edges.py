"""Push at its edges: channel secrets at rest and through a key rotation, notifications for
channels that are gone, watches the provider refuses, and notifications during a sync.

The same deployment as test_push (the callback listener is the channels' address, the sandbox
shares the test's clock, sweeps run by hand).
"""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from uuid import UUID

import grpc
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from sandbox import Sandbox
from service.api.server import Server
from service.app import App
from service.config import Settings
from service.domain.credentials import SignIn
from service.rekey import rekey
from service.storage.database import Database
from service.storage.sealing import KeyRing
from tests.integration.test_push import live, pushing, sb, settings, sweep
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.syncing import TOKEN, bearer

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
