"""Two service processes behind one public address receive a calendar's notifications, and
the change is synced exactly once, within seconds, without waiting for a poll.

The processes run `python -m service` with their schedulers on, on one database. Their public
URL is a small round-robin load balancer in this process, so consecutive notifications of the
sandbox's channel land on different replicas; each makes the integration due by the end of the
coalescing window, and whichever replica claims it first syncs it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import secrets
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from aiohttp import ClientSession, web
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Sandbox
from tests.support.process import ServiceProcess
from tests.support.rpc import Stub
from tests.support.syncing import CALENDAR, TOKEN, put_event, seed_calendar, summaries
from tests.support.waiting import until

SAFETY = 30.0


class Balancer:
    """Forwards every request round-robin to the replicas' callback listeners, and remembers
    which replica answered what."""

    def __init__(self) -> None:
        self.backends: list[str] = []
        self.routed: list[tuple[str, str, int]] = []  # (backend, resource state, status)
        self._turn = itertools.count()
        self._runner: web.AppRunner | None = None
        self._http: ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._http = ClientSession()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._http is not None
        backend = self.backends[next(self._turn) % len(self.backends)]
        async with self._http.request(
            request.method, backend + request.path_qs, headers=request.headers
        ) as answer:
            self.routed.append(
                (backend, request.headers.get("X-Goog-Resource-State", ""), answer.status)
            )
            return web.Response(status=answer.status)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=2)
        yield sandbox


@pytest.fixture
async def balancer() -> AsyncIterator[Balancer]:
    lb = Balancer()
    await lb.start()
    yield lb
    await lb.stop()


@pytest.fixture
async def replicas(database_url: str, balancer: Balancer) -> AsyncIterator[list[ServiceProcess]]:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    processes = [
        ServiceProcess(
            env={
                "DATABASE_URL": database_url,
                "INTEGRATIONS_ENCRYPTION_KEYS": f"test-1:{key}",
                "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS": "true",
                "INTEGRATIONS_PUBLIC_URL": balancer.url,
                "INTEGRATIONS_CALLBACK_LISTEN": "127.0.0.1:0",
                "INTEGRATIONS_SCHEDULER_SWEEP_INTERVAL": "0.2s",
                "INTEGRATIONS_PUSH_COALESCE_WINDOW": "1.5s",
                "INTEGRATIONS_SHUTDOWN_GRACE": "2s",
            }
        )
        for _ in range(2)
    ]
    try:
        await asyncio.gather(*(p.start() for p in processes))
        for process in processes:
            (serving,) = process.events("sign_in_callback_serving")
            balancer.backends.append(f"http://{serving['address']}")
        yield processes
    finally:
        await asyncio.gather(
            *(p.stop(signal.SIGTERM) for p in processes if p.proc is not None),
            return_exceptions=True,
        )


async def test_notifications_on_two_replicas_make_exactly_one_sync_within_seconds(
    replicas: list[ServiceProcess], balancer: Balancer, sb: Sandbox
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{replicas[0].port}") as channel:
        stub = Stub(channel)
        created = await stub.Create(
            api.CreateRequest(
                display_name="Team calendar",
                connector_type="google_calendar",
                config=pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(
                        calendar_id=CALENDAR, api_base_url=f"{sb.url}/calendar/v3"
                    )
                ),
                credentials=pb.Credentials(bearer_token=TOKEN),
            )
        )
        ident = created.integration.id

        async def runs() -> list[pb.SyncRun]:
            found = await stub.ListSyncRuns(api.ListSyncRunsRequest(id=ident))
            return list(found.runs)

        async def settled() -> bool:
            """Its channel is open and the catch-up sync after it is done: only the safety
            net's poll is scheduled, hours away."""
            got = (await stub.Get(api.GetRequest(id=ident))).integration
            later = datetime.now(UTC) + timedelta(hours=5)
            return (
                got.push.state == pb.PUSH_STATE_ACTIVE
                and got.sync_state == pb.SYNC_STATE_SYNCED
                and got.next_sync_time.ToDatetime(tzinfo=UTC) > later
            )

        await until(settled, "the channel and the catch-up sync", timeout=SAFETY)
        before = await runs()

        put_event(sb.state, "e8", "Planning")
        put_event(sb.state, "e9", "Review")
        changed = await until(
            lambda: _both(stub, ident), "both changes in ListRecords", timeout=SAFETY
        )
        assert changed
        await until(settled, "the sync to end", timeout=SAFETY)

        after = await runs()
        assert len(after) == len(before) + 1, [(r.trigger, r.outcome) for r in after]
        exists = [
            (backend, status) for backend, state, status in balancer.routed if state == "exists"
        ]
        assert len(exists) == 2 and {b for b, _ in exists} == set(balancer.backends)
        assert all(status == 200 for _, status in exists)


async def _both(stub: Stub, ident: str) -> bool:
    found = await summaries(stub, ident)
    return found.get("e8") == "Planning" and found.get("e9") == "Review"
