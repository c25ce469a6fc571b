"""Settings of a deployment: read from environment variables, overridden by command-line flags.

Every setting is one field below with its env var and flag; the README's configuration table
is the same list. Durations accept "90s", "15m", "1h" or plain seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from service.domain.breaker import BreakerPolicy
from service.domain.push import PushPolicy
from service.domain.records import RecordLimits
from service.domain.validation import (
    MAX_BREAKER_THRESHOLD,
    MIN_BREAKER_THRESHOLD,
    IntervalBounds,
    origin,
)
from service.domain.webhooks import RetryPolicy
from service.storage.sealing import KeyRing
from service.tenancy import parse_api_keys

#: More server processes than this is a typo, not a deployment (each holds a database pool).
MAX_WORKERS = 64

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(text: str) -> timedelta:
    """'90s', '15m', '1h', '250ms' or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 15m, 1h)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class ConnectorLimits:
    """How many background syncs and probes of each connector type one process runs at once."""

    default: int
    overrides: Mapping[str, int] = field(default_factory=dict)

    def of(self, connector_type: str) -> int:
        return self.overrides.get(connector_type, self.default)

    @classmethod
    def parse(cls, text: str) -> ConnectorLimits:
        """'8' or '8,google_calendar=4,ics_feed=16' (the number alone is every other type's)."""
        default, overrides = None, {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, sep, value = part.rpartition("=")
            if not value.isdigit() or int(value) < 1 or (sep and not name.strip()):
                raise ValueError(
                    f"connector concurrency: {part!r} is not 'n' or 'type=n' with n at least 1"
                )
            if sep:
                overrides[name.strip()] = int(value)
            else:
                default = int(value)
        if default is None:
            raise ValueError("connector concurrency needs a number for every connector type")
        return cls(default, overrides)


def _setting(env: str, flag: str, help: str, default: Any, *, secret: bool = False) -> Any:
    # Secrets stay out of repr, so a logged or printed Settings cannot leak them.
    return field(
        default=default, repr=not secret, metadata={"env": env, "flag": flag, "help": help}
    )


@dataclass(frozen=True)
class Settings:
    """Everything a deployment can set. Defaults suit a laptop."""

    listen: str = _setting(
        "INTEGRATIONS_LISTEN", "--listen", "gRPC listen address (host:port)", "127.0.0.1:50051"
    )
    database_url: str = _setting(
        "DATABASE_URL",
        "--database-url",
        "PostgreSQL URL; when empty an embedded PostgreSQL is started in --data-dir",
        "",
    )
    data_dir: Path = _setting(
        "INTEGRATIONS_DATA_DIR",
        "--data-dir",
        "Where the embedded PostgreSQL and the local encryption key live",
        Path(".data"),
    )
    default_tenant: str = _setting(
        "INTEGRATIONS_DEFAULT_TENANT",
        "--default-tenant",
        "Tenant of every caller when the service runs without API keys "
        "(INTEGRATIONS_ALLOW_UNAUTHENTICATED)",
        "default",
    )
    log_format: str = _setting(
        "INTEGRATIONS_LOG_FORMAT",
        "--log-format",
        "json, console, or auto (console on a terminal, JSON otherwise)",
        "auto",
    )
    log_level: str = _setting(
        "INTEGRATIONS_LOG_LEVEL", "--log-level", "debug, info, warning or error", "info"
    )
    workers: int = _setting(
        "INTEGRATIONS_WORKERS",
        "--workers",
        "Server processes sharing the gRPC port (SO_REUSEPORT), each with its own database "
        "pool, scheduler loop and listener; one per core uses every core",
        1,
    )
    db_pool_size: int = _setting(
        "INTEGRATIONS_DB_POOL_SIZE", "--db-pool-size", "Database connections per process", 10
    )
    min_sync_interval: timedelta = _setting(
        "INTEGRATIONS_MIN_SYNC_INTERVAL",
        "--min-sync-interval",
        "Shortest sync interval callers may set (seconds are fine for demos and tests)",
        timedelta(minutes=5),
    )
    max_sync_interval: timedelta = _setting(
        "INTEGRATIONS_MAX_SYNC_INTERVAL",
        "--max-sync-interval",
        "Longest sync interval callers may set",
        timedelta(hours=24),
    )
    default_sync_interval: timedelta = _setting(
        "INTEGRATIONS_DEFAULT_SYNC_INTERVAL",
        "--default-sync-interval",
        "Sync interval of integrations created without one",
        timedelta(minutes=15),
    )
    request_id_ttl: timedelta = _setting(
        "INTEGRATIONS_REQUEST_ID_TTL",
        "--request-id-ttl",
        "How long a Create request_id is remembered for idempotent retries",
        timedelta(hours=24),
    )
    shutdown_grace: timedelta = _setting(
        "INTEGRATIONS_SHUTDOWN_GRACE",
        "--shutdown-grace",
        "How long SIGTERM waits for in-flight RPCs before cancelling them",
        timedelta(seconds=10),
    )
    api_keys: str = _setting(
        "INTEGRATIONS_API_KEYS",
        "--api-keys",
        "Per-tenant API keys 'key=tenant,...' (a key: 16+ of A-Z a-z 0-9 -._~+/, or "
        "'sha256:<hex of the key>'); every call must send 'authorization: Bearer <key>'. "
        "Parsed strictly: a malformed list stops the start",
        "",
        secret=True,
    )
    allow_unauthenticated: bool = _setting(
        "INTEGRATIONS_ALLOW_UNAUTHENTICATED",
        "--allow-unauthenticated",
        "Serve without API keys, every caller acting for the default tenant (true/false); "
        "the service refuses to start with neither this nor INTEGRATIONS_API_KEYS. For a "
        "laptop (make run sets it when no keys are given), never in production",
        False,
    )
    encryption_keys: str = _setting(
        "INTEGRATIONS_ENCRYPTION_KEYS",
        "--encryption-keys",
        "Credential encryption key ring 'id:base64key,...' (newest first); when empty, a key "
        "file in --data-dir is used (created on first start)",
        "",
        secret=True,
    )
    watch_heartbeat_interval: timedelta = _setting(
        "INTEGRATIONS_WATCH_HEARTBEAT_INTERVAL",
        "--watch-heartbeat-interval",
        "How long a WatchStatus stream may stay quiet before a heartbeat is sent",
        timedelta(seconds=30),
    )
    watch_buffer_size: int = _setting(
        "INTEGRATIONS_WATCH_BUFFER_SIZE",
        "--watch-buffer-size",
        "Changes buffered per WatchStatus stream; a subscriber further behind is ended with "
        "RESOURCE_EXHAUSTED and resumes from its last revision",
        1000,
    )
    watch_max_streams: int = _setting(
        "INTEGRATIONS_WATCH_MAX_STREAMS",
        "--watch-max-streams",
        "WatchStatus streams one process serves at once; more are refused with "
        "RESOURCE_EXHAUSTED (WATCH_STREAMS_EXHAUSTED, with a RetryInfo) and the client retries "
        "(on this replica or another)",
        4000,
    )
    watch_poll_interval: timedelta = _setting(
        "INTEGRATIONS_WATCH_POLL_INTERVAL",
        "--watch-poll-interval",
        "How often watched history is re-read without a notification (the safety net under "
        "LISTEN/NOTIFY), and the listener connection is checked",
        timedelta(seconds=5),
    )
    history_retention: timedelta = _setting(
        "INTEGRATIONS_HISTORY_RETENTION",
        "--history-retention",
        "How long status-change history is kept: WatchStatus resumes from revisions within it "
        "and ListEvents shows it (each integration's latest event is always kept)",
        timedelta(days=7),
    )
    allow_private_networks: bool = _setting(
        "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS",
        "--allow-private-networks",
        "Let connectors fetch URLs on private, loopback and link-local addresses (true/false); "
        "keep false in production, turn on for the local sandbox",
        False,
    )
    provider_timeout: timedelta = _setting(
        "INTEGRATIONS_PROVIDER_TIMEOUT",
        "--provider-timeout",
        "Longest a request to a provider may take, reading the whole answer included",
        timedelta(seconds=30),
    )
    sync_page_size: int = _setting(
        "INTEGRATIONS_SYNC_PAGE_SIZE",
        "--sync-page-size",
        "Records per page asked of providers that let the client choose (Google: 1-2500)",
        250,
    )
    max_response_bytes: int = _setting(
        "INTEGRATIONS_MAX_RESPONSE_BYTES",
        "--max-response-bytes",
        "Largest answer read from a provider (a feed, a page of records); a bigger one fails "
        "the sync as a malformed answer instead of exhausting memory",
        32 * 1024 * 1024,
    )
    max_record_bytes: int = _setting(
        "INTEGRATIONS_MAX_RECORD_BYTES",
        "--max-record-bytes",
        "Largest synced record stored (its JSON); a bigger one is skipped and counted on the "
        "sync run (records_rejected) while the rest of the page is stored",
        1024 * 1024,
    )
    sync_commit_records: int = _setting(
        "INTEGRATIONS_SYNC_COMMIT_RECORDS",
        "--sync-commit-records",
        "Most records written in one transaction: a bigger page (a whole iCalendar feed) is "
        "committed in parts of this size, each with its place in the sync",
        2500,
    )
    sync_lease: timedelta = _setting(
        "INTEGRATIONS_SYNC_LEASE",
        "--sync-lease",
        "How long a sync run stays claimed without a sign of life; a run whose process died is "
        "taken over after this, by the scheduler of another replica within one more sweep (or "
        "by the next Sync)",
        timedelta(minutes=2),
    )
    callback_listen: str = _setting(
        "INTEGRATIONS_CALLBACK_LISTEN",
        "--callback-listen",
        "HTTP listen address (host:port) of the OAuth sign-in callback; port 0 picks a free "
        "port, 'off' serves no callback (sign-ins are then refused here)",
        "127.0.0.1:0",
    )
    public_url: str = _setting(
        "INTEGRATIONS_PUBLIC_URL",
        "--public-url",
        "Base URL at which browsers reach the callback, the same for every replica (e.g. "
        "https://integrations.example.com); empty: http://<callback address>",
        "",
    )
    sign_in_ttl: timedelta = _setting(
        "INTEGRATIONS_SIGN_IN_TTL",
        "--sign-in-ttl",
        "How long a started OAuth sign-in can be completed",
        timedelta(minutes=10),
    )
    google_client_id: str = _setting(
        "INTEGRATIONS_GOOGLE_CLIENT_ID",
        "--google-client-id",
        "This deployment's OAuth client id at Google (Google Calendar sign-in and token "
        "refresh); empty: no sign-in, expired tokens are not refreshed",
        "",
    )
    google_client_secret: str = _setting(
        "INTEGRATIONS_GOOGLE_CLIENT_SECRET",
        "--google-client-secret",
        "The secret of that OAuth client (prefer the env var: flags show in process lists)",
        "",
        secret=True,
    )
    sign_in_return_origins: str = _setting(
        "INTEGRATIONS_SIGN_IN_RETURN_ORIGINS",
        "--sign-in-return-origins",
        "Origins (scheme://host[:port], comma-separated) a sign-in's return_url may be on, "
        "e.g. https://app.example.com; empty: any http(s) URL",
        "",
    )
    oauth_trusted_origins: str = _setting(
        "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS",
        "--oauth-trusted-origins",
        "Origins (scheme://host:port, comma-separated) an integration's token_url / "
        "authorization_url override may point at, e.g. a sandbox; a provider's own are always "
        "trusted. The OAuth client secret is sent to the token URL: keep empty in production",
        "",
    )

    sync_run_retention: timedelta = _setting(
        "INTEGRATIONS_SYNC_RUN_RETENTION",
        "--sync-run-retention",
        "How long ended sync runs stay listable in ListSyncRuns (each integration's latest run "
        "is always kept)",
        timedelta(days=30),
    )
    scheduler: bool = _setting(
        "INTEGRATIONS_SCHEDULER",
        "--scheduler",
        "Run the background loops in this process (true/false): scheduled syncs, retries, "
        "breaker probes, lateness notices and webhook deliveries. Every replica may run them; "
        "turn it off in processes that should only serve the API",
        True,
    )
    scheduler_sweep_interval: timedelta = _setting(
        "INTEGRATIONS_SCHEDULER_SWEEP_INTERVAL",
        "--scheduler-sweep-interval",
        "How often the loop looks for due work (each sweep is jittered so replicas spread "
        "out); a crashed replica's work is picked up within the sync lease plus this",
        timedelta(seconds=5),
    )
    sync_concurrency: int = _setting(
        "INTEGRATIONS_SYNC_CONCURRENCY",
        "--sync-concurrency",
        "Background syncs and probes one process runs at once, all connectors together",
        16,
    )
    connector_concurrency: str = _setting(
        "INTEGRATIONS_CONNECTOR_CONCURRENCY",
        "--connector-concurrency",
        "Background syncs and probes one process runs at once per connector type: a number "
        "for every type, then 'type=n' exceptions, e.g. '8,google_calendar=4'",
        "8",
    )
    breaker_threshold: int = _setting(
        "INTEGRATIONS_BREAKER_THRESHOLD",
        "--breaker-threshold",
        "Failures in a row that open an integration's breaker (the safety brake: auto-pause, "
        "then only connection probes), unless the integration sets its own (1-100)",
        5,
    )
    breaker_backoff: timedelta = _setting(
        "INTEGRATIONS_BREAKER_BACKOFF",
        "--breaker-backoff",
        "Wait before retrying after a failure; doubles with each failure in a row",
        timedelta(seconds=30),
    )
    breaker_backoff_max: timedelta = _setting(
        "INTEGRATIONS_BREAKER_BACKOFF_MAX",
        "--breaker-backoff-max",
        "Longest wait between retries while the breaker is closed",
        timedelta(minutes=15),
    )
    breaker_probe_interval: timedelta = _setting(
        "INTEGRATIONS_BREAKER_PROBE_INTERVAL",
        "--breaker-probe-interval",
        "Wait before the first probe once the breaker opened (and before retrying an auth "
        "error); doubles with each failed probe",
        timedelta(minutes=1),
    )
    breaker_probe_interval_max: timedelta = _setting(
        "INTEGRATIONS_BREAKER_PROBE_INTERVAL_MAX",
        "--breaker-probe-interval-max",
        "Longest wait between probes",
        timedelta(hours=1),
    )
    breaker_probe_timeout: timedelta = _setting(
        "INTEGRATIONS_BREAKER_PROBE_TIMEOUT",
        "--breaker-probe-timeout",
        "How long a probe may take before it counts as a failure",
        timedelta(seconds=30),
    )
    schedule_jitter: float = _setting(
        "INTEGRATIONS_SCHEDULE_JITTER",
        "--schedule-jitter",
        "Fraction (0-1) randomly taken off every automatic wait (sync interval, retry, probe, "
        "webhook retry) so a fleet does not stampede; waits only get shorter, so jitter never "
        "makes an integration late",
        0.1,
    )
    push: bool = _setting(
        "INTEGRATIONS_PUSH",
        "--push",
        "Open push channels (Google Calendar events.watch) when --public-url is set, so changes "
        "sync within seconds and polling becomes a safety net (true/false). The URL must be "
        "HTTPS (plain http only on a loopback address, for the sandbox); Google POSTs to "
        "<public url>/push/<tenant>",
        True,
    )
    push_channel_ttl: timedelta = _setting(
        "INTEGRATIONS_PUSH_CHANNEL_TTL",
        "--push-channel-ttl",
        "How long a push channel is asked to live (the provider may choose less); it is renewed "
        "before it expires",
        timedelta(days=7),
    )
    push_renew_before: timedelta = _setting(
        "INTEGRATIONS_PUSH_RENEW_BEFORE",
        "--push-renew-before",
        "How long before its expiration a push channel is renewed (a new one opened, then the "
        "old one stopped)",
        timedelta(hours=1),
    )
    push_poll_interval: timedelta = _setting(
        "INTEGRATIONS_PUSH_POLL_INTERVAL",
        "--push-poll-interval",
        "The safety net: how often an integration with a healthy push channel still polls (its "
        "own sync interval when that is longer)",
        timedelta(hours=6),
    )
    push_coalesce_window: timedelta = _setting(
        "INTEGRATIONS_PUSH_COALESCE_WINDOW",
        "--push-coalesce-window",
        "A notification syncs its integration after at most this long; the notifications that "
        "come within it make the same sync",
        timedelta(seconds=1),
    )
    push_retry_interval: timedelta = _setting(
        "INTEGRATIONS_PUSH_RETRY_INTERVAL",
        "--push-retry-interval",
        "After push failed for an integration (channel refused, changes no notification "
        "announced), how long it polls at its own interval before push is tried again",
        timedelta(hours=1),
    )
    tombstone_retention: timedelta = _setting(
        "INTEGRATIONS_TOMBSTONE_RETENTION",
        "--tombstone-retention",
        "How long deleted records stay in the change feed as tombstones; a feed cursor older "
        "than the oldest purged tombstone answers FAILED_PRECONDITION CURSOR_EXPIRED",
        timedelta(days=30),
    )
    webhook_timeout: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_TIMEOUT",
        "--webhook-timeout",
        "Longest a webhook receiver may take to answer; longer counts as a failed attempt",
        timedelta(seconds=10),
    )
    webhook_sweep_interval: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_SWEEP_INTERVAL",
        "--webhook-sweep-interval",
        "How often each replica looks for webhook deliveries that are due (with the "
        "background loops on; see --scheduler)",
        timedelta(seconds=1),
    )
    webhook_concurrency: int = _setting(
        "INTEGRATIONS_WEBHOOK_CONCURRENCY",
        "--webhook-concurrency",
        "Webhook deliveries one process sends at once",
        16,
    )
    webhook_retry_backoff: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_RETRY_BACKOFF",
        "--webhook-retry-backoff",
        "Wait before retrying a failed webhook delivery; doubles with each failure",
        timedelta(seconds=10),
    )
    webhook_retry_backoff_max: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_RETRY_BACKOFF_MAX",
        "--webhook-retry-backoff-max",
        "Longest wait between two attempts of a webhook delivery",
        timedelta(hours=6),
    )
    webhook_retry_horizon: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_RETRY_HORIZON",
        "--webhook-retry-horizon",
        "How long after its event a webhook delivery is retried before it is given up",
        timedelta(days=3),
    )
    webhook_disable_after: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_DISABLE_AFTER",
        "--webhook-disable-after",
        "A webhook endpoint whose every attempt failed for this long is disabled (with the "
        "reason, and a webhook.endpoint_disabled event); UpdateWebhook enables it again",
        timedelta(days=5),
    )
    webhook_delivery_retention: timedelta = _setting(
        "INTEGRATIONS_WEBHOOK_DELIVERY_RETENTION",
        "--webhook-delivery-retention",
        "How long delivered and given-up webhook deliveries stay in the delivery log",
        timedelta(days=7),
    )
    purpose_header: str = _setting(
        "INTEGRATIONS_PURPOSE_HEADER",
        "--purpose-header",
        "A request header that tells providers why each request is made (sync, probe, test), "
        "e.g. X-Sandbox-Purpose for the sandbox's request log; empty sends none",
        "",
    )

    tls_cert: str = _setting(
        "INTEGRATIONS_TLS_CERT",
        "--tls-cert",
        "PEM file with the server's certificate (and its chain): serve gRPC over TLS; set with "
        "--tls-key. Reloaded on SIGHUP and when the file changes",
        "",
    )
    tls_key: str = _setting(
        "INTEGRATIONS_TLS_KEY",
        "--tls-key",
        "PEM file with the private key of --tls-cert",
        "",
    )
    tls_client_ca: str = _setting(
        "INTEGRATIONS_TLS_CLIENT_CA",
        "--tls-client-ca",
        "PEM file with the CA certificates that sign client certificates: turns on mutual TLS "
        "(every gRPC client must present a valid certificate they signed)",
        "",
    )
    tls_client_tenants: str = _setting(
        "INTEGRATIONS_TLS_CLIENT_TENANTS",
        "--tls-client-tenants",
        "Under mutual TLS, tenants by client certificate common name, 'cn=tenant,...': a listed "
        "certificate acts for its tenant; an unlisted one needs an API key (or is refused "
        "when no keys are set)",
        "",
    )
    tls_reload_interval: timedelta = _setting(
        "INTEGRATIONS_TLS_RELOAD_INTERVAL",
        "--tls-reload-interval",
        "How often the TLS files are checked for changes (SIGHUP reloads at once); new "
        "connections get the new certificate, a broken file keeps the old one",
        timedelta(minutes=1),
    )
    http_tls: bool = _setting(
        "INTEGRATIONS_HTTP_TLS",
        "--http-tls",
        "Serve the callback and ops HTTP listeners over TLS too, with --tls-cert/--tls-key "
        "(true/false)",
        False,
    )
    insecure_plaintext: bool = _setting(
        "INTEGRATIONS_INSECURE_PLAINTEXT",
        "--insecure-plaintext",
        "Allow API keys over plaintext gRPC on a non-loopback address (true/false). Without "
        "it such a deployment refuses to start: keys would cross the network in clear text. "
        "Only behind a TLS-terminating proxy or mesh on the same host",
        False,
    )
    ops_listen: str = _setting(
        "INTEGRATIONS_OPS_LISTEN",
        "--ops-listen",
        "HTTP listen address (host:port) of /metrics (Prometheus), /healthz and /readyz; "
        "port 0 picks a free port, 'off' serves none",
        "off",
    )
    readiness_interval: timedelta = _setting(
        "INTEGRATIONS_READINESS_INTERVAL",
        "--readiness-interval",
        "How often readiness (database, migrations, LISTEN connection) is checked for the gRPC "
        "health service; /readyz checks on every request",
        timedelta(seconds=2),
    )

    @property
    def tls(self) -> bool:
        """Whether gRPC is served over TLS."""
        return bool(self.tls_cert)

    @property
    def breaker_policy(self) -> BreakerPolicy:
        """The deployment's breaker policy (ValueError when the settings contradict)."""
        return BreakerPolicy(
            threshold=self.breaker_threshold,
            backoff_initial=self.breaker_backoff,
            backoff_max=self.breaker_backoff_max,
            jitter=self.schedule_jitter,
            probe_initial=self.breaker_probe_interval,
            probe_max=self.breaker_probe_interval_max,
            probe_timeout=self.breaker_probe_timeout,
        )

    @property
    def push_policy(self) -> PushPolicy:
        """The deployment's push settings, with the address channels notify (None: push is
        off here) or why push cannot work here (a public URL that is not HTTPS)."""
        address, refusal = None, ""
        if self.push and self.public_url:
            parts = urlsplit(self.public_url)
            if parts.scheme == "https" or _loopback(parts.hostname or ""):
                address = self.public_url.rstrip("/")
            else:
                refusal = (
                    "this deployment's public URL (INTEGRATIONS_PUBLIC_URL) is not HTTPS, and "
                    "Google only sends notifications to HTTPS addresses"
                )
        return PushPolicy(
            address=address,
            refusal=refusal,
            ttl=self.push_channel_ttl,
            renew_before=self.push_renew_before,
            poll_interval=self.push_poll_interval,
            coalesce=self.push_coalesce_window,
            retry_after=self.push_retry_interval,
        )

    @property
    def webhook_retry_policy(self) -> RetryPolicy:
        """Webhook retries and the endpoints' brake (ValueError when the settings contradict)."""
        return RetryPolicy(
            initial=self.webhook_retry_backoff,
            maximum=self.webhook_retry_backoff_max,
            horizon=self.webhook_retry_horizon,
            jitter=self.schedule_jitter,
            disable_after=self.webhook_disable_after,
        )

    def key_ring(self) -> KeyRing:
        """The credential key ring: the configured keys, or the laptop default, a key file in
        the data directory made on first use."""
        if self.encryption_keys:
            return KeyRing.parse(self.encryption_keys)
        return KeyRing.local(self.data_dir / "encryption.keys")

    @property
    def connector_limits(self) -> ConnectorLimits:
        """Per-connector concurrency (ValueError when --connector-concurrency is malformed)."""
        return ConnectorLimits.parse(self.connector_concurrency)

    @property
    def record_limits(self) -> RecordLimits:
        """What one synced record may be."""
        return RecordLimits(max_bytes=self.max_record_bytes)

    @property
    def interval_bounds(self) -> IntervalBounds:
        return IntervalBounds(
            self.min_sync_interval, self.max_sync_interval, self.default_sync_interval
        )

    def check(self) -> None:
        """Reject contradictory settings at start-up rather than at the first request."""
        b = self.interval_bounds
        if not (timedelta(0) < b.minimum <= b.default <= b.maximum):
            raise ValueError("sync intervals must satisfy 0 < min <= default <= max")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}")
        if self.db_pool_size < 2:
            raise ValueError("db pool size must be at least 2")
        if self.log_format not in ("auto", "json", "console"):
            raise ValueError("log format must be auto, json or console")
        self._check_oauth()
        if self.provider_timeout <= timedelta(0) or self.sync_lease <= timedelta(0):
            raise ValueError("provider timeout and sync lease must be positive")
        if self.sync_page_size < 1:
            raise ValueError("sync page size must be at least 1")
        if self.sync_commit_records < 1:
            raise ValueError("sync commit records must be at least 1")
        if min(self.max_response_bytes, self.max_record_bytes) < 1024:
            raise ValueError("response and record size limits must be at least 1024 bytes")
        if min(
            self.watch_heartbeat_interval,
            self.watch_poll_interval,
            self.history_retention,
            self.sync_run_retention,
        ) <= timedelta(0):
            raise ValueError("watch intervals and history retention must be positive")
        if self.watch_buffer_size < 1 or self.watch_max_streams < 1:
            raise ValueError("watch buffer size and stream limit must be at least 1")
        self._check_scheduler()
        self._check_transport()
        self._check_secrets()
        self._check_push()
        self._check_feed_and_webhooks()

    def _check_transport(self) -> None:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("set both --tls-cert and --tls-key, or neither")
        if self.tls_client_ca and not self.tls:
            raise ValueError("--tls-client-ca (mutual TLS) needs --tls-cert and --tls-key")
        if self.tls_client_tenants and not self.tls_client_ca:
            raise ValueError("--tls-client-tenants needs mutual TLS (--tls-client-ca)")
        from service.tenancy import Tenancy

        Tenancy(self.default_tenant, self.api_keys, self.tls_client_tenants)  # checks both
        if self.http_tls and not self.tls:
            raise ValueError("--http-tls needs --tls-cert and --tls-key")
        if self.tls_reload_interval <= timedelta(0) or self.readiness_interval <= timedelta(0):
            raise ValueError("TLS reload and readiness intervals must be positive")
        if self.ops_listen != "off" and not _HOST_PORT.match(self.ops_listen):
            raise ValueError("ops listen address must be host:port or off")
        if not _HOST_PORT.match(self.listen):
            raise ValueError("listen address must be host:port")
        if self.keys_in_clear_text and not self.insecure_plaintext:
            raise ValueError(
                f"API keys are set but gRPC on {self.listen} is plaintext: they would cross the "
                "network in clear text. Set --tls-cert and --tls-key, listen on a loopback "
                "address, or (behind a TLS-terminating proxy on this host) --insecure-plaintext"
            )

    @property
    def keys_in_clear_text(self) -> bool:
        """API keys on a plaintext gRPC listener that other machines can reach."""
        return bool(self.api_keys) and not self.tls and not is_loopback(self.listen)

    def _check_secrets(self) -> None:
        # Parsed now, before anything starts, so a mistake is one line, not a traceback
        # after the database came up. Messages never quote a key.
        parse_api_keys(self.api_keys)
        if self.encryption_keys:
            KeyRing.parse(self.encryption_keys)

    def check_authentication(self) -> None:
        """A serving process needs API keys, or an explicit choice to run without them: a
        blank or forgotten value must never quietly turn authentication off."""
        if (self.api_keys or self.tls_client_tenants) and self.allow_unauthenticated:
            raise ValueError(
                "set API keys (or client certificate tenants) or "
                "INTEGRATIONS_ALLOW_UNAUTHENTICATED=true, not both"
            )
        if not self.api_keys and not self.tls_client_tenants and not self.allow_unauthenticated:
            raise ValueError(
                "no API keys: set INTEGRATIONS_API_KEYS ('key=tenant,...') or mutual TLS with "
                "INTEGRATIONS_TLS_CLIENT_TENANTS, or "
                "INTEGRATIONS_ALLOW_UNAUTHENTICATED=true to let every caller act for the "
                "default tenant (a laptop, never production)"
            )

    @property
    def return_origins(self) -> frozenset[str]:
        """The origins sign-in return URLs may be on (empty: any); ValueError when malformed."""
        return parse_origins(self.sign_in_return_origins, "sign-in return origins")

    def _check_push(self) -> None:
        if min(
            self.push_channel_ttl,
            self.push_renew_before,
            self.push_poll_interval,
            self.push_retry_interval,
        ) <= timedelta(0) or self.push_coalesce_window < timedelta(0):
            raise ValueError("push durations must be positive (the coalescing window may be 0)")
        if self.push_renew_before >= self.push_channel_ttl:
            raise ValueError("push channels must be renewed before they expire: renew-before < TTL")

    def _check_feed_and_webhooks(self) -> None:
        _ = self.webhook_retry_policy  # checks the backoff, horizon and disable-after
        if min(
            self.tombstone_retention,
            self.webhook_timeout,
            self.webhook_sweep_interval,
            self.webhook_delivery_retention,
        ) <= timedelta(0):
            raise ValueError(
                "tombstone retention, webhook timeout, sweep interval and delivery retention "
                "must be positive"
            )
        if self.webhook_concurrency < 1:
            raise ValueError("webhook concurrency must be at least 1")

    def _check_scheduler(self) -> None:
        if not MIN_BREAKER_THRESHOLD <= self.breaker_threshold <= MAX_BREAKER_THRESHOLD:
            raise ValueError(
                f"breaker threshold must be between {MIN_BREAKER_THRESHOLD} and "
                f"{MAX_BREAKER_THRESHOLD}"
            )
        # Building them checks them: backoff and probe bounds, jitter, the limits' syntax.
        _ = self.breaker_policy, self.connector_limits
        if self.scheduler_sweep_interval <= timedelta(0):
            raise ValueError("scheduler sweep interval must be positive")
        if self.sync_concurrency < 1:
            raise ValueError("sync concurrency must be at least 1")

    def _check_oauth(self) -> None:
        if self.callback_listen != "off" and not _HOST_PORT.match(self.callback_listen):
            raise ValueError("callback listen address must be host:port or off")
        if self.public_url and not _BASE_URL.match(self.public_url):
            raise ValueError("public URL must be an absolute http(s) URL without a query")
        _ = self.return_origins
        if self.sign_in_ttl <= timedelta(0):
            raise ValueError("sign-in TTL must be positive")
        if bool(self.google_client_id) != bool(self.google_client_secret):
            raise ValueError("set both the Google client id and its secret, or neither")


def parse_origins(text: str, what: str) -> frozenset[str]:
    """'https://a.example,http://localhost:3000' as normalised origins (scheme://host[:port],
    the scheme's default port left out); ValueError naming the entry that is not one."""
    found = set()
    for entry in text.split(",") if text else ():
        try:
            parts = urlsplit(entry)
            _ = parts.port
        except ValueError:
            parts = urlsplit("")
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
            or entry != entry.strip()
        ):
            raise ValueError(f"{what}: {entry!r} is not an origin like https://host[:port]")
        found.add(origin(entry))
    return frozenset(found)


_BOOLEANS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


def is_loopback(address: str) -> bool:
    """Whether host:port only accepts connections from this machine."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name or a wildcard: reachable from elsewhere


_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$")
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


def _loopback(host: str) -> bool:
    """Whether `host` names this machine (where plain http is acceptable: the sandbox)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _convert(kind: Any, raw: str) -> Any:
    if kind is bool or kind == "bool":
        if raw.strip().lower() not in _BOOLEANS:
            raise ValueError(f"not a boolean: {raw!r} (use true or false)")
        return _BOOLEANS[raw.strip().lower()]
    if kind is timedelta or kind == "timedelta":
        return parse_duration(raw)
    if kind is int or kind == "int":
        return int(raw)
    if kind is float or kind == "float":
        return float(raw)
    if kind is Path or kind == "Path":
        return Path(raw)
    return raw


def load(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment, then flags (flags win)."""
    environ = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="python -m service", description="The integrations gRPC service."
    )
    for f in fields(Settings):
        parser.add_argument(
            f.metadata["flag"], dest=f.name, help=f"{f.metadata['help']} (env {f.metadata['env']})"
        )
    args = parser.parse_args(argv)
    changes: dict[str, Any] = {}
    for f in fields(Settings):
        raw = getattr(args, f.name)
        if raw is None:
            raw = environ.get(f.metadata["env"])
        if raw is not None and raw != "":
            try:
                changes[f.name] = _convert(f.type, raw)
            except ValueError as exc:
                fail(f"{f.metadata['flag']} / {f.metadata['env']}: {exc}")
    settings = replace(Settings(), **changes)
    try:
        settings.check()
    except ValueError as exc:
        fail(str(exc))
    return settings


def fail(message: str) -> NoReturn:
    """Stop before anything started, with one line on stderr (no usage text, no traceback)."""
    print(f"python -m service: error: {message}", file=sys.stderr)
    raise SystemExit(2)
