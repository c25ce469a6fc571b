"""Settings of the process: where it listens and what it stores in, who may call it, its
transport security and its operations listener."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from service.config.values import setting


@dataclass(frozen=True)
class Serving:
    """Settings of the process: where it listens and what it stores in, who may call it, its"""

    listen: str = setting(
        "INTEGRATIONS_LISTEN", "--listen", "gRPC listen address (host:port)", "127.0.0.1:50051"
    )
    database_url: str = setting(
        "DATABASE_URL",
        "--database-url",
        "PostgreSQL URL; when empty an embedded PostgreSQL is started in --data-dir",
        "",
    )
    data_dir: Path = setting(
        "INTEGRATIONS_DATA_DIR",
        "--data-dir",
        "Where the embedded PostgreSQL and the local encryption key live",
        Path(".data"),
    )
    default_tenant: str = setting(
        "INTEGRATIONS_DEFAULT_TENANT",
        "--default-tenant",
        "Tenant of every caller when the service runs without API keys "
        "(INTEGRATIONS_ALLOW_UNAUTHENTICATED)",
        "default",
    )
    log_format: str = setting(
        "INTEGRATIONS_LOG_FORMAT",
        "--log-format",
        "json, console, or auto (console on a terminal, JSON otherwise)",
        "auto",
    )
    log_level: str = setting(
        "INTEGRATIONS_LOG_LEVEL", "--log-level", "debug, info, warning or error", "info"
    )
    workers: int = setting(
        "INTEGRATIONS_WORKERS",
        "--workers",
        "Server processes sharing the gRPC port (SO_REUSEPORT), each with its own database "
        "pool, scheduler loop and listener; one per core uses every core",
        1,
    )
    db_pool_size: int = setting(
        "INTEGRATIONS_DB_POOL_SIZE", "--db-pool-size", "Database connections per process", 10
    )
    min_sync_interval: timedelta = setting(
        "INTEGRATIONS_MIN_SYNC_INTERVAL",
        "--min-sync-interval",
        "Shortest sync interval callers may set (seconds are fine for demos and tests)",
        timedelta(minutes=5),
    )
    max_sync_interval: timedelta = setting(
        "INTEGRATIONS_MAX_SYNC_INTERVAL",
        "--max-sync-interval",
        "Longest sync interval callers may set",
        timedelta(hours=24),
    )
    default_sync_interval: timedelta = setting(
        "INTEGRATIONS_DEFAULT_SYNC_INTERVAL",
        "--default-sync-interval",
        "Sync interval of integrations created without one",
        timedelta(minutes=15),
    )
    request_id_ttl: timedelta = setting(
        "INTEGRATIONS_REQUEST_ID_TTL",
        "--request-id-ttl",
        "How long a Create request_id is remembered for idempotent retries",
        timedelta(hours=24),
    )
    shutdown_grace: timedelta = setting(
        "INTEGRATIONS_SHUTDOWN_GRACE",
        "--shutdown-grace",
        "How long SIGTERM waits for in-flight RPCs before cancelling them",
        timedelta(seconds=10),
    )
    api_keys: str = setting(
        "INTEGRATIONS_API_KEYS",
        "--api-keys",
        "Per-tenant API keys 'key=tenant,...' (a key: 16+ of A-Z a-z 0-9 -._~+/, or "
        "'sha256:<hex of the key>'); every call must send 'authorization: Bearer <key>'. "
        "Parsed strictly: a malformed list stops the start",
        "",
        secret=True,
    )
    allow_unauthenticated: bool = setting(
        "INTEGRATIONS_ALLOW_UNAUTHENTICATED",
        "--allow-unauthenticated",
        "Serve without API keys, every caller acting for the default tenant (true/false); "
        "the service refuses to start with neither this nor INTEGRATIONS_API_KEYS. For a "
        "laptop (make run sets it when no keys are given), never in production",
        False,
    )
    encryption_keys: str = setting(
        "INTEGRATIONS_ENCRYPTION_KEYS",
        "--encryption-keys",
        "Credential encryption key ring 'id:base64key,...' (newest first); when empty, a key "
        "file in --data-dir is used (created on first start)",
        "",
        secret=True,
    )

    tls_cert: str = setting(
        "INTEGRATIONS_TLS_CERT",
        "--tls-cert",
        "PEM file with the server's certificate (and its chain): serve gRPC over TLS; set with "
        "--tls-key. Reloaded on SIGHUP and when the file changes",
        "",
    )
    tls_key: str = setting(
        "INTEGRATIONS_TLS_KEY",
        "--tls-key",
        "PEM file with the private key of --tls-cert",
        "",
    )
    tls_client_ca: str = setting(
        "INTEGRATIONS_TLS_CLIENT_CA",
        "--tls-client-ca",
        "PEM file with the CA certificates that sign client certificates: turns on mutual TLS "
        "(every gRPC client must present a valid certificate they signed)",
        "",
    )
    tls_client_tenants: str = setting(
        "INTEGRATIONS_TLS_CLIENT_TENANTS",
        "--tls-client-tenants",
        "Under mutual TLS, tenants by client certificate common name, 'cn=tenant,...': a listed "
        "certificate acts for its tenant; an unlisted one needs an API key (or is refused "
        "when no keys are set)",
        "",
    )
    tls_reload_interval: timedelta = setting(
        "INTEGRATIONS_TLS_RELOAD_INTERVAL",
        "--tls-reload-interval",
        "How often the TLS files are checked for changes (SIGHUP reloads at once); new "
        "connections get the new certificate, a broken file keeps the old one",
        timedelta(minutes=1),
    )
    http_tls: bool = setting(
        "INTEGRATIONS_HTTP_TLS",
        "--http-tls",
        "Serve the callback and ops HTTP listeners over TLS too, with --tls-cert/--tls-key "
        "(true/false)",
        False,
    )
    insecure_plaintext: bool = setting(
        "INTEGRATIONS_INSECURE_PLAINTEXT",
        "--insecure-plaintext",
        "Allow API keys over plaintext gRPC on a non-loopback address (true/false). Without "
        "it such a deployment refuses to start: keys would cross the network in clear text. "
        "Only behind a TLS-terminating proxy or mesh on the same host",
        False,
    )
    ops_listen: str = setting(
        "INTEGRATIONS_OPS_LISTEN",
        "--ops-listen",
        "HTTP listen address (host:port) of /metrics (Prometheus), /healthz and /readyz; "
        "port 0 picks a free port, 'off' serves none",
        "off",
    )
    readiness_interval: timedelta = setting(
        "INTEGRATIONS_READINESS_INTERVAL",
        "--readiness-interval",
        "How often readiness (database, migrations, LISTEN connection) is checked for the gRPC "
        "health service; /readyz checks on every request",
        timedelta(seconds=2),
    )
