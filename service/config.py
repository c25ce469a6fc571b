"""Settings of a deployment: read from environment variables, overridden by command-line flags.

Every setting is one field below with its env var and flag; the README's configuration table
is the same list. Durations accept "90s", "15m", "1h" or plain seconds.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from service.domain.breaker import BreakerPolicy
from service.domain.validation import (
    MAX_BREAKER_THRESHOLD,
    MIN_BREAKER_THRESHOLD,
    IntervalBounds,
)

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
        "Tenant of callers that present no API key",
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
        "Per-tenant API keys 'key=tenant,...'; when set every call must send "
        "'authorization: Bearer <key>'; when empty all calls act for the default tenant",
        "",
        secret=True,
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
    oauth_trusted_origins: str = _setting(
        "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS",
        "--oauth-trusted-origins",
        "Origins (scheme://host:port, comma-separated) an integration's token_url / "
        "authorization_url override may point at, e.g. a sandbox; a provider's own are always "
        "trusted. The OAuth client secret is sent to the token URL: keep empty in production",
        "",
    )

    scheduler: bool = _setting(
        "INTEGRATIONS_SCHEDULER",
        "--scheduler",
        "Run the background sync loop in this process (true/false): scheduled syncs, retries, "
        "breaker probes and lateness notices. Every replica may run it; turn it off in processes "
        "that should only serve the API",
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
        "Fraction (0-1) randomly taken off every automatic wait (sync interval, retry, probe) "
        "so a fleet does not stampede; waits only get shorter, so jitter never makes an "
        "integration late",
        0.1,
    )
    purpose_header: str = _setting(
        "INTEGRATIONS_PURPOSE_HEADER",
        "--purpose-header",
        "A request header that tells providers why each request is made (sync, probe, test), "
        "e.g. X-Sandbox-Purpose for the sandbox's request log; empty sends none",
        "",
    )

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
    def connector_limits(self) -> ConnectorLimits:
        """Per-connector concurrency (ValueError when --connector-concurrency is malformed)."""
        return ConnectorLimits.parse(self.connector_concurrency)

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
        if min(
            self.watch_heartbeat_interval, self.watch_poll_interval, self.history_retention
        ) <= timedelta(0):
            raise ValueError("watch intervals and history retention must be positive")
        if self.watch_buffer_size < 1:
            raise ValueError("watch buffer size must be at least 1")
        self._check_scheduler()

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
        if self.sign_in_ttl <= timedelta(0):
            raise ValueError("sign-in TTL must be positive")
        if bool(self.google_client_id) != bool(self.google_client_secret):
            raise ValueError("set both the Google client id and its secret, or neither")


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
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):\d{1,5}$")
_BASE_URL = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")


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
                parser.error(f"{f.metadata['flag']} / {f.metadata['env']}: {exc}")
    settings = replace(Settings(), **changes)
    try:
        settings.check()
    except ValueError as exc:
        parser.error(str(exc))
    return settings
