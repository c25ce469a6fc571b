"""Every Prometheus metric the service exports, in one place (the README lists the same).

Code elsewhere records with one-line calls (`metrics.SYNC_RUNS.labels(...).inc()`); nothing
else in the service imports prometheus_client. Labels stay bounded: connector types, status
and outcome names, gRPC methods and codes — never an integration, a tenant or a URL.

Metrics live in the process's default registry, beside prometheus_client's process and
platform collectors (CPU, memory, file descriptors, GC).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from service.domain.sync import SyncRun

# `*_created` series double every counter's lines and no dashboard or alert here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Latency buckets (seconds) for RPCs and provider calls: 5 ms to 60 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
#: Sync runs take longer: 100 ms to 1 h.
SYNC_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# -- gRPC server, under the names of go-grpc-prometheus / grpc-ecosystem (dashboards use them)

GRPC_STARTED = Counter(
    "grpc_server_started_total",
    "RPCs started on the server.",
    ["grpc_type", "grpc_service", "grpc_method"],
)
GRPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
)
GRPC_HANDLING = Histogram(
    "grpc_server_handling_seconds",
    "Time from an RPC's start to its status (streams: their whole life).",
    ["grpc_type", "grpc_service", "grpc_method"],
    buckets=LATENCY_BUCKETS,
)

# -- syncs

SYNC_RUNS = Counter(
    "integrations_sync_runs_total",
    "Sync runs ended, by connector type, what started them and how they ended.",
    ["connector", "trigger", "outcome"],
)
SYNC_RECORDS = Counter(
    "integrations_sync_records_total",
    "Records moved by syncs: upserted (new or changed), deleted, or rejected (skipped because "
    "they could not be stored, e.g. over the size limit or holding NaN; see SyncRun).",
    ["connector", "result"],
)
SYNC_DURATION = Histogram(
    "integrations_sync_duration_seconds",
    "How long sync runs took, by connector type and outcome.",
    ["connector", "outcome"],
    buckets=SYNC_BUCKETS,
)
SYNC_PAGES = Counter(
    "integrations_sync_pages_total",
    "Pages committed by sync runs, by connector type.",
    ["connector"],
)

# -- providers

PROVIDER_REQUESTS = Counter(
    "integrations_provider_requests_total",
    "HTTP requests to providers, by connector type and status class (2xx, 3xx, 4xx, 5xx, or "
    "error when no answer came: timeout, refused, reset, blocked).",
    ["connector", "status_class"],
)
PROVIDER_LATENCY = Histogram(
    "integrations_provider_request_duration_seconds",
    "How long provider requests took, the whole body read included.",
    ["connector"],
    buckets=LATENCY_BUCKETS,
)

# -- the fleet of integrations (refreshed periodically by `Gauges`, never per scrape)

INTEGRATIONS = Gauge(
    "integrations_integrations",
    "Integrations by status (all tenants; every replica reports the same numbers: use max()).",
    ["status"],
)
BREAKERS = Gauge(
    "integrations_breakers",
    "Integrations by breaker state: open (auto-paused, probing) or closed.",
    ["state"],
)
BREAKER_OPEN_OLDEST = Gauge(
    "integrations_breaker_open_oldest_seconds",
    "How long the longest-open breaker has been open (0 when none is open).",
)
STATS_AGE = Gauge(
    "integrations_stats_refreshed_timestamp_seconds",
    "When the integration counts, breaker states and scheduler lag were last read.",
)

# -- the scheduler

SCHEDULER_LAG = Gauge(
    "integrations_scheduler_lag_seconds",
    "Age of the oldest due attempt not yet claimed (0 when nothing is overdue).",
)
SCHEDULER_CLAIMS = Counter(
    "integrations_scheduler_claims_total",
    "Due attempts claimed by this process's scheduler, by kind (sync or probe).",
    ["kind"],
)
IN_FLIGHT = Gauge(
    "integrations_in_flight",
    "Syncs and probes running in this process right now, by kind.",
    ["kind"],
)

# -- CPU-heavy work in worker processes (service.offload)

OFFLOADED = Counter(
    "integrations_offloaded_total",
    "Pieces of CPU-heavy work (parsing a big answer, preparing a big page) sent to the worker "
    "processes, by function.",
    ["work"],
)
OFFLOAD_IN_FLIGHT = Gauge(
    "integrations_offload_in_flight",
    "Pieces of work sent to the worker processes and not finished yet (running or queued).",
)

# -- OAuth

TOKEN_REFRESHES = Counter(
    "integrations_token_refreshes_total",
    "Access-token refreshes by outcome: ok, failed, lost_race (another caller's refresh or a "
    "reauthorization stored newer credentials first; those are used).",
    ["outcome"],
)

# -- WatchStatus

WATCH_SUBSCRIBERS = Gauge("integrations_watch_subscribers", "Open WatchStatus streams.")
WATCH_DELIVERIES = Counter(
    "integrations_watch_deliveries_total", "Messages sent on WatchStatus streams."
)
WATCH_OVERFLOWS = Counter(
    "integrations_watch_overflows_total",
    "WatchStatus streams ended because their subscriber fell more than the buffer behind.",
)

# -- database and process

DB_POOL_SIZE = Gauge("integrations_db_pool_size", "Connections open in the database pool.")
DB_POOL_IN_USE = Gauge(
    "integrations_db_pool_connections_in_use", "Pool connections checked out right now."
)
DB_POOL_MAX = Gauge("integrations_db_pool_max_size", "The pool's configured maximum.")
READY = Gauge(
    "integrations_ready",
    "1 when this process is ready (database reachable, migrations applied, LISTEN connection "
    "up, not draining), else 0.",
)


class OptionalGauge(Collector):
    """A gauge without a sample until it is set: a value that does not exist (the expiry of a
    certificate when TLS is off) is absent, not 0, so `min()` and alerts never see a 1970
    expiry. Its HELP and TYPE are always there."""

    def __init__(self, name: str, documentation: str) -> None:
        self.name = name
        self.documentation = documentation
        self._value: float | None = None
        REGISTRY.register(self)

    def set(self, value: float) -> None:
        self._value = value

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation)
        if self._value is not None:
            family.add_metric([], self._value)
        return [family]


TLS_CERTIFICATE_EXPIRY = OptionalGauge(
    "integrations_tls_certificate_expiry_timestamp_seconds",
    "When the server certificate in use expires (Unix time; absent without TLS).",
)


def sync_run_ended(connector: str, run: SyncRun, seconds: float) -> None:
    """Count an ended sync run, its pages and its records."""
    outcome = run.outcome.value.lower()
    SYNC_RUNS.labels(connector, run.trigger.value.lower(), outcome).inc()
    SYNC_DURATION.labels(connector, outcome).observe(seconds)
    SYNC_PAGES.labels(connector).inc(run.pages)
    SYNC_RECORDS.labels(connector, "upserted").inc(run.records_upserted)
    SYNC_RECORDS.labels(connector, "deleted").inc(run.records_deleted)
    SYNC_RECORDS.labels(connector, "rejected").inc(run.records_rejected)


def status_class(status: int | None) -> str:
    """2xx, 3xx, 4xx, 5xx, or error (no HTTP answer)."""
    return "error" if status is None or not 100 <= status < 600 else f"{status // 100}xx"


@contextmanager
def provider_request(connector: str) -> Iterator[Callable[[int], None]]:
    """Time one provider request; call the yielded function with the HTTP status once it
    answered (a block left without that counts as `error`: no answer)."""
    status: list[int] = []
    started = time.perf_counter()
    try:
        yield status.append
    finally:
        PROVIDER_LATENCY.labels(connector).observe(time.perf_counter() - started)
        PROVIDER_REQUESTS.labels(connector, status_class(status[0] if status else None)).inc()


@contextmanager
def in_flight(kind: str) -> Iterator[None]:
    """Count the block as a sync or probe in flight."""
    gauge = IN_FLIGHT.labels(kind)
    gauge.inc()
    try:
        yield
    finally:
        gauge.dec()


def pool_gauges(size: Callable[[], float], idle: Callable[[], float], maximum: int) -> None:
    """Read the pool's size and use at scrape time (cheap: in-memory counters)."""
    DB_POOL_SIZE.set_function(size)
    DB_POOL_IN_USE.set_function(lambda: size() - idle())
    DB_POOL_MAX.set(maximum)


def exposition(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(registry)
