"""Settings of a deployment: read from environment variables, overridden by command-line flags.

Every setting is one field of `Serving`, `Syncing` or `Background` with its env var and flag;
the README's configuration table is the same list. Durations accept "90s", "15m", "1h" or plain
seconds. `Settings` is all of them, with what they mean together and the start-up checks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from typing import Any, NoReturn
from urllib.parse import urlsplit

from service.config.background import Background
from service.config.serving import Serving
from service.config.syncing import Syncing
from service.config.values import (
    BASE_URL,
    HOST_PORT,
    MAX_WORKERS,
    ConnectorLimits,
    convert,
    is_loopback,
    loopback,
    parse_origins,
)
from service.domain.breaker import BreakerPolicy
from service.domain.push import PushPolicy
from service.domain.records import RecordLimits
from service.domain.validation import (
    MAX_BREAKER_THRESHOLD,
    MIN_BREAKER_THRESHOLD,
    IntervalBounds,
)
from service.domain.webhooks import RetryPolicy
from service.storage.sealing import KeyRing
from service.tenancy import parse_api_keys


# The order of the bases is the reverse of the fields' (and the flags'): Serving's come first.
@dataclass(frozen=True)
class Settings(Background, Syncing, Serving):
    """Everything a deployment can set. Defaults suit a laptop."""

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
            if parts.scheme == "https" or loopback(parts.hostname or ""):
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
        if self.log_level.lower() not in ("debug", "info", "warning", "error"):
            raise ValueError("log level must be debug, info, warning or error")
        self._check_oauth()
        if self.provider_timeout <= timedelta(0) or self.sync_lease <= timedelta(0):
            raise ValueError("provider timeout and sync lease must be positive")
        if self.sync_page_size < 1:
            raise ValueError("sync page size must be at least 1")
        if not 0 <= self.cpu_workers <= 64:
            raise ValueError("cpu workers must be between 0 and 64")
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
        if self.ops_listen != "off" and not HOST_PORT.match(self.ops_listen):
            raise ValueError("ops listen address must be host:port or off")
        if not HOST_PORT.match(self.listen):
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
        if self.callback_listen != "off" and not HOST_PORT.match(self.callback_listen):
            raise ValueError("callback listen address must be host:port or off")
        if self.public_url and not BASE_URL.match(self.public_url):
            raise ValueError("public URL must be an absolute http(s) URL without a query")
        _ = self.return_origins
        if self.sign_in_ttl <= timedelta(0):
            raise ValueError("sign-in TTL must be positive")
        if bool(self.google_client_id) != bool(self.google_client_secret):
            raise ValueError("set both the Google client id and its secret, or neither")


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
                changes[f.name] = convert(f.type, raw)
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
