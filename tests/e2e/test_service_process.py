"""The service as a newcomer runs it: `python -m service` with no DATABASE_URL starts an
embedded PostgreSQL, answers over gRPC with reflection and health, drains on SIGTERM, and keeps
its data across restarts."""

from __future__ import annotations

import signal
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from tests.support.process import ServiceProcess


async def list_services(channel: grpc.aio.Channel) -> set[str]:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    names: set[str] = set()
    async for response in stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    ):
        names |= {s.name for s in response.list_services_response.service}
    return names


async def test_the_service_runs_on_its_own_embedded_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    service = ServiceProcess("--data-dir", str(data_dir))
    port = await service.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("", "integrations.v1.IntegrationService"):
            check = await health.Check(health_pb2.HealthCheckRequest(service=name))
            assert check.status == health_pb2.HealthCheckResponse.SERVING
        assert {
            "integrations.v1.IntegrationService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= await list_services(channel)
        stub = service_pb2_grpc.IntegrationServiceStub(channel)
        created = (
            await stub.Create(
                api.CreateRequest(
                    display_name="Team calendar",
                    connector_type="google_calendar",
                    request_id="e2e-1",
                )
            )
        ).integration
        assert created.status == pb.STATUS_DRAFT
    assert await service.stop(signal.SIGTERM) == 0
    assert service.events("shutting_down") and service.events("stopped")
    rpc_lines = service.events("rpc")
    create_line = next(e for e in rpc_lines if str(e["method"]).endswith("/Create"))
    assert create_line["code"] == "OK" and "duration_ms" in create_line
    assert (data_dir / "postgres" / "PG_VERSION").exists()

    # Started again on the same data directory, it still knows the integration.
    again = ServiceProcess("--data-dir", str(data_dir))
    port = await again.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = service_pb2_grpc.IntegrationServiceStub(channel)
        got = (await stub.Get(api.GetRequest(id=created.id))).integration
        assert got.display_name == "Team calendar"
    assert await again.stop() == 0


async def test_bad_settings_exit_with_a_clear_message(tmp_path: Path) -> None:
    import asyncio
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--min-sync-interval",
        "soon",
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"not a duration" in err and b"Traceback" not in err
