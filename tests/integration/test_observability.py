"""What an operator sees of a running service: Prometheus metrics on the ops listener,
/healthz and /readyz, gRPC health following readiness, reflection v1, and traces."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client.parser import text_string_to_metric_families

from sandbox import Sandbox
from service.api.server import Server
from service.app import App
from service.config import Settings
from service.observability import gauges, tracing
from service.observability.readiness import Readiness
from tests.support.clock import FakeClock
from tests.support.rpc import Stub
from tests.support.syncing import SANDBOX_DEPLOYMENT, bearer, create, google

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT, ops_listen="127.0.0.1:0")


async def scrape(server: Server) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert server.ops is not None
    async with aiohttp.ClientSession() as http, http.get(f"{server.ops.url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[(s.name, frozenset(s.labels.items()))] = s.value
    return found


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_a_sync_shows_in_the_metrics(
    server: Server, stub: Stub, sb: Sandbox, calendar: str
) -> None:
    before = await scrape(server)
    await stub.Sync(api.SyncRequest(id=calendar, wait=True))
    after = await scrape(server)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    rpc = {"grpc_type": "unary", "grpc_service": "integrations.v1.IntegrationService"}
    assert delta("grpc_server_started_total", grpc_method="Sync", **rpc) == 1
    assert delta("grpc_server_handled_total", grpc_method="Sync", grpc_code="OK", **rpc) == 1
    assert delta("grpc_server_handling_seconds_count", grpc_method="Sync", **rpc) == 1
    cal = {"connector": "google_calendar"}
    assert delta("integrations_sync_runs_total", trigger="manual", outcome="succeeded", **cal) == 1
    assert delta("integrations_sync_records_total", result="upserted", **cal) == 3
    assert delta("integrations_sync_pages_total", **cal) == 2  # page size 2, 3 events
    assert delta("integrations_sync_duration_seconds_count", outcome="succeeded", **cal) == 1
    assert delta("integrations_provider_requests_total", status_class="2xx", **cal) == 2
    assert delta("integrations_provider_request_duration_seconds_count", **cal) == 2
    assert value(after, "integrations_db_pool_max_size") == server.app.settings.db_pool_size
    assert value(after, "integrations_db_pool_size") >= 1
    assert value(after, "integrations_ready") == 1
    assert value(after, "process_resident_memory_bytes") > 0
    # Bounded labels: no integration id anywhere.
    assert not any(calendar in str(labels) for _, labels in after)


async def test_fleet_gauges_count_statuses_and_open_brakes(
    server: Server, stub: Stub, sb: Sandbox, calendar: str, clock: FakeClock
) -> None:
    await create(stub, "ics_feed", pb.ConnectorConfig(), None)  # DRAFT: nothing configured
    await gauges.refresh(server.app.db, clock)
    samples = await scrape(server)
    assert value(samples, "integrations_integrations", status="active") == 1
    assert value(samples, "integrations_integrations", status="draft") == 1
    assert value(samples, "integrations_integrations", status="paused") == 0  # exported at 0
    assert value(samples, "integrations_breakers", state="closed") == 2
    assert value(samples, "integrations_breakers", state="open") == 0
    # The calendar is due now and nobody claimed it: the scheduler lags by the clock's advance.
    clock.advance(seconds=90)
    await gauges.refresh(server.app.db, clock)
    assert value(await scrape(server), "integrations_scheduler_lag_seconds") >= 90


async def test_health_endpoints_and_grpc_health_follow_readiness(
    server: Server, channel: grpc.aio.Channel
) -> None:
    assert server.ops is not None
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.ops.url}/healthz") as resp:
            assert resp.status == 200
        async with http.get(f"{server.ops.url}/readyz") as resp:
            assert resp.status == 200
            body = await resp.json()
    assert body["checks"] == {
        "database": True,
        "migrations": True,
        "listen_connection": True,
        "not_draining": True,
    }
    health = health_pb2_grpc.HealthStub(channel)
    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    # Draining (what SIGTERM does first): not ready, NOT_SERVING.
    server.readiness.drain()
    await server.health.enter_graceful_shutdown()
    async with aiohttp.ClientSession() as http, http.get(f"{server.ops.url}/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["checks"]["not_draining"] is False and "shutting down" in body["problem"]
    check = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert check.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_answers_v1_and_v1alpha(channel: grpc.aio.Channel) -> None:
    for version in ("v1", "v1alpha"):
        call = channel.stream_stream(
            f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        requests = [
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="integrations.v1.IntegrationService"
            ),
            reflection_pb2.ServerReflectionRequest(
                file_containing_symbol="grpc.reflection.v1.ServerReflection"
            ),
        ]
        answers = [answer async for answer in call(iter(requests))]
        names = {s.name for s in answers[0].list_services_response.service}
        assert {
            "integrations.v1.IntegrationService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        } <= names, version
        assert answers[1].file_descriptor_response.file_descriptor_proto, version
        assert answers[2].file_descriptor_response.file_descriptor_proto, version


@pytest.fixture
async def traced() -> AsyncIterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    try:
        yield exporter
    finally:
        tracing.disable()
        provider.shutdown()


async def test_traces_show_an_rpc_with_its_queries_and_provider_calls(
    traced: InMemorySpanExporter, settings: Settings, clock: FakeClock, sb: Sandbox
) -> None:
    app = await App.start(settings, clock=clock)
    server = Server(app)
    await server.start("127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = Stub(channel)
            ident = (await create(stub, "google_calendar", google(sb), bearer())).id
            await stub.TestConnection(api.TestConnectionRequest(id=ident))
        # A background sync: a trace of its own, its pages as spans.
        await app.scheduler.sweep()
        await app.scheduler.idle()
    finally:
        await server.stop(1)
        await app.close()
    spans = traced.get_finished_spans()
    rpc = next(s for s in spans if s.name.endswith("IntegrationService/TestConnection"))
    in_rpc = _trace_of(spans, rpc)
    assert any(s.attributes and s.attributes.get("db.system") == "postgresql" for s in in_rpc)
    assert any(s.kind is SpanKind.CLIENT and s.name.startswith("GET") for s in in_rpc)
    run = next(s for s in spans if s.name == "sync_run")
    assert run.parent is None  # a background run is its own trace
    pages = [s for s in _trace_of(spans, run) if s.name == "sync_page"]
    assert len(pages) == 2 and all(p.parent and p.parent.span_id == _id(run) for p in pages)
    assert any(
        s.attributes and s.attributes.get("db.system") == "postgresql"
        for s in _trace_of(spans, run)
    )
    # Provider URLs are recorded without their query values.
    urls = [
        str(s.attributes.get("http.url", s.attributes.get("url.full", "")))
        for s in spans
        if s.attributes
    ]
    assert urls and not any("syncToken=" in u and "syncToken=…" not in u for u in urls)


def _id(span: ReadableSpan) -> int:
    assert span.context is not None
    span_id: int = span.context.span_id
    return span_id


def _trace_of(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> list[ReadableSpan]:
    assert root.context is not None
    return [
        s for s in spans if s.context is not None and s.context.trace_id == root.context.trace_id
    ]


async def test_log_lines_carry_trace_ids_when_tracing_is_on(traced: InMemorySpanExporter) -> None:
    assert "trace_id" not in tracing.add_trace_ids(None, "info", {})
    with tracing.span("work") as current:
        event = dict(tracing.add_trace_ids(None, "info", {"event": "x"}))
    context = current.get_span_context()
    assert event["trace_id"] == format(context.trace_id, "032x")
    assert event["span_id"] == format(context.span_id, "016x")
    tracing.disable()
    with tracing.span("untraced"):
        assert "trace_id" not in tracing.add_trace_ids(None, "info", {})


async def test_readiness_names_pending_migrations(server: Server) -> None:
    assert server.ops is not None
    async with server.app.db.raw() as conn:
        newest = await conn.fetchval("SELECT max(version) FROM schema_migrations")
        await conn.execute("DELETE FROM schema_migrations WHERE version = $1", newest)
    async with aiohttp.ClientSession() as http, http.get(f"{server.ops.url}/readyz") as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["checks"]["database"] is True and body["checks"]["migrations"] is False
    assert "migrations pending" in body["problem"]


async def test_readiness_is_false_while_the_listen_connection_is_down(server: Server) -> None:
    # A listener that is not connected (never started here; in production: lost, and not
    # back yet), beside a database that answers.
    down = server.app.db.listener(
        on_change=lambda *_: None, on_connected=lambda: None, check_interval=1.0
    )
    report = await Readiness(server.app.db, down).check()
    assert not report.ready and report.database and report.migrations
    assert report.as_dict()["checks"] == {
        "database": True,
        "migrations": True,
        "listen_connection": False,
        "not_draining": True,
    }
    assert "LISTEN connection" in report.problem
    assert (await Readiness(server.app.db, server.app.watch.listener).check()).ready
