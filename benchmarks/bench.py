"""What every benchmark shares: the sizes of a run (full or smoke), the stack it runs on, and
ways to make realistic integrations through the API."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.duration_pb2 import Duration
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from benchmarks.h2load import Load
from benchmarks.stack import Child, Postgres, SandboxProcess, ServiceProcess

if TYPE_CHECKING:
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub

TOKEN = "bench-token"
SERVICE = "/integrations.v1.IntegrationService/"


@dataclass(frozen=True)
class WatchCase:
    """A WatchStatus fan-out: subscribers, changes per second, for how long."""

    subscribers: int
    rate: float
    seconds: float
    p99_target_ms: float


@dataclass(frozen=True)
class Sizes:
    """How big and how long each benchmark is."""

    name: str
    rounds: int
    load: Load
    sync_events: int
    sync_changes: int
    sync_increments: int
    sync_rounds: int
    fleet: int
    fleet_window: float
    idle_window: float
    watch: tuple[WatchCase, ...]
    stall_events: int
    stall_window: float
    stall_rounds: int
    outage: int
    outage_window: float
    sweep: str
    """The scheduler's sweep interval (the default in full runs; short in smoke runs, where
    waiting for a sweep would be most of the time)."""


FULL = Sizes(
    name="full",
    rounds=2,
    load=Load(connections=8, streams=16, seconds=5.0, warm_up=1.0),
    sync_events=100_000,
    sync_changes=1_000,
    sync_increments=5,
    sync_rounds=2,
    fleet=100_000,
    fleet_window=10.0,
    idle_window=10.0,
    watch=(WatchCase(1_000, 20, 10.0, 100.0), WatchCase(10_000, 2, 10.0, 1000.0)),
    stall_events=100_000,
    stall_window=10.0,
    stall_rounds=1,
    outage=10_000,
    outage_window=20.0,
    sweep="5s",
)

SMOKE = Sizes(
    name="smoke (tiny sizes: the figures mean nothing, the code paths all ran)",
    rounds=1,
    load=Load(connections=2, streams=4, seconds=1.0, warm_up=0.2),
    sync_events=1_200,
    sync_changes=30,
    sync_increments=2,
    sync_rounds=1,
    fleet=300,
    fleet_window=1.0,
    idle_window=0.5,
    watch=(WatchCase(10, 10, 0.5, 100.0),),
    stall_events=600,
    stall_window=1.0,
    stall_rounds=1,
    outage=40,
    outage_window=1.0,
    sweep="0.3s",
)


@dataclass
class Bench:
    """One run: its sizes, the database server, the sandbox, a work directory."""

    sizes: Sizes
    pg: Postgres
    sandbox: SandboxProcess
    work: Path
    children: list[Child] = field(default_factory=list)

    async def service(self, name: str, database_url: str, *args: str) -> ServiceProcess:
        """Start a service process (stopped at the end of the run)."""
        process = ServiceProcess(
            name, self.work, database_url, "--allow-private-networks", "true", *args
        )
        self.children.append(process)
        await process.start()
        return process

    async def bare(self, name: str, spec: dict[str, Any]) -> tuple[Child, str]:
        """Start the bare gRPC server (benchmarks/bare.py); returns it and its target."""
        path = self.work / f"{name}.json"
        path.write_text(json.dumps(spec))
        child = Child(name, self.work)
        self.children.append(child)
        await child.spawn("-m", "benchmarks.bare", str(path))
        line = await child.wait_for_line(lambda s: s.startswith("port "), "port line")
        return child, f"127.0.0.1:{line.split()[1]}"

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in reversed(self.children)))
        self.children.clear()


def encoded(message: Any) -> str:
    """A protobuf message as base64 (for the bare server's spec)."""
    return base64.b64encode(message.SerializeToString()).decode()


def stub(target: str) -> tuple[grpc.aio.Channel, IntegrationServiceAsyncStub]:
    channel = grpc.aio.insecure_channel(target)
    return channel, service_pb2_grpc.IntegrationServiceStub(channel)


async def google_integration(
    stub: IntegrationServiceAsyncStub, sandbox_url: str, calendar: str, name: str
) -> pb.Integration:
    """A Google Calendar integration on the sandbox, verified (ACTIVE)."""
    reply = await stub.Create(
        api.CreateRequest(
            display_name=name,
            connector_type="google_calendar",
            config=pb.ConnectorConfig(
                google_calendar=pb.GoogleCalendarConfig(
                    calendar_id=calendar, api_base_url=f"{sandbox_url}/calendar/v3"
                )
            ),
            credentials=pb.Credentials(bearer_token=TOKEN),
        )
    )
    return _active(reply.integration)


async def ics_integration(
    stub: IntegrationServiceAsyncStub,
    sandbox_url: str,
    feed: str,
    name: str,
    *,
    interval: timedelta | None = None,
    breaker_threshold: int | None = None,
) -> pb.Integration:
    """An ICS feed integration on the sandbox, verified (ACTIVE)."""
    request = api.CreateRequest(
        display_name=name,
        connector_type="ics_feed",
        config=pb.ConnectorConfig(ics_feed=pb.IcsFeedConfig(url=f"{sandbox_url}/ics/{feed}.ics")),
    )
    if interval is not None:
        request.sync_interval.CopyFrom(Duration(seconds=int(interval.total_seconds())))
    if breaker_threshold is not None:
        request.breaker_threshold = breaker_threshold
    return _active((await stub.Create(request)).integration)


def _active(integration: pb.Integration) -> pb.Integration:
    if integration.status != pb.STATUS_ACTIVE:
        raise RuntimeError(f"the bench's integration is not ACTIVE: {integration}")
    return integration


async def sync(stub: IntegrationServiceAsyncStub, ident: str) -> api.SyncResponse:
    """Sync now and wait for the run's end."""
    reply: api.SyncResponse = await stub.Sync(api.SyncRequest(id=ident, wait=True), timeout=600)
    return reply


async def raw_call(channel: grpc.aio.Channel, method: str, request: bytes) -> bytes:
    """A unary call with the bytes as they travel (no (de)serialization on this side)."""
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(SERVICE + method)
    reply: bytes = await call(request)
    return reply
