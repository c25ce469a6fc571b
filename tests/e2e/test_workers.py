"""`--workers 2`: two server processes answer on one port (port 0 included), both do work,
SIGTERM drains both, and a worker that dies takes the others down with a failing exit code."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from tests.support.process import ServiceProcess
from tests.support.waiting import until

#: Fresh connections to open at most: SO_REUSEPORT spreads connections by a hash of their
#: addresses, so some number of them reach both workers; each is a separate TCP connection.
CONNECTIONS = 64


@pytest.fixture
async def workers(database_url: str, tmp_path: Path) -> AsyncIterator[ServiceProcess]:
    service = ServiceProcess(
        "--workers",
        "2",
        "--data-dir",
        str(tmp_path),
        "--scheduler",
        "false",
        env={"DATABASE_URL": database_url},
    )
    await service.start()
    yield service
    if service.proc is not None and service.proc.returncode is None:
        await service.stop()


def served_by(service: ServiceProcess) -> set[object]:
    return {e.get("worker") for e in service.events("rpc")}


async def test_two_workers_share_one_port_and_drain_on_sigterm(workers: ServiceProcess) -> None:
    assert {e["worker"] for e in workers.events("worker_ready")} == {0, 1}
    created: list[str] = []
    for n in range(CONNECTIONS):
        # A channel of its own (no shared subchannel pool) is a new TCP connection.
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{workers.port}", options) as ch:
            stub = service_pb2_grpc.IntegrationServiceStub(ch)
            reply = await stub.Create(
                api.CreateRequest(display_name=f"Calendar {n}", connector_type="ics_feed")
            )
            created.append(reply.integration.id)
        if len(served_by(workers)) == 2:
            break
    await until(lambda: served_by(workers) == {0, 1}, "both workers to have answered RPCs")

    # One database behind both: whichever worker answers knows what the other created.
    async with grpc.aio.insecure_channel(f"127.0.0.1:{workers.port}") as ch:
        stub = service_pb2_grpc.IntegrationServiceStub(ch)
        listed = await stub.List(api.ListRequest(page_size=100))
        assert {i.id for i in listed.integrations} == set(created)

    assert await workers.stop(signal.SIGTERM) == 0
    assert {e.get("worker") for e in workers.events("stopped")} == {0, 1}


async def test_a_worker_that_dies_stops_the_others(workers: ServiceProcess) -> None:
    victim = next(e for e in workers.events("worker_ready") if e["worker"] == 1)
    os.kill(int(str(victim["pid"])), signal.SIGKILL)
    assert workers.proc is not None
    assert await workers.proc.wait() == 1
    await workers.stop()
    exited = workers.events("worker_exited")
    assert exited and exited[0]["worker"] == 1 and exited[0]["code"] == -signal.SIGKILL
    assert {e.get("worker") for e in workers.events("stopped")} == {0}
