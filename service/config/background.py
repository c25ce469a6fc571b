"""Settings of what runs on its own: the scheduler and the safety brake, push channels and
webhooks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.config.values import setting


@dataclass(frozen=True)
class Background:
    """Settings of what runs on its own: the scheduler and the safety brake, push channels and"""

    scheduler: bool = setting(
        "INTEGRATIONS_SCHEDULER",
        "--scheduler",
        "Run the background loops in this process (true/false): scheduled syncs, retries, "
        "breaker probes, lateness notices and webhook deliveries. Every replica may run them; "
        "turn it off in processes that should only serve the API",
        True,
    )
    scheduler_sweep_interval: timedelta = setting(
        "INTEGRATIONS_SCHEDULER_SWEEP_INTERVAL",
        "--scheduler-sweep-interval",
        "How often the loop looks for due work (each sweep is jittered so replicas spread "
        "out); a crashed replica's work is picked up within the sync lease plus this",
        timedelta(seconds=5),
    )
    sync_concurrency: int = setting(
        "INTEGRATIONS_SYNC_CONCURRENCY",
        "--sync-concurrency",
        "Background syncs and probes one process runs at once, all connectors together",
        16,
    )
    connector_concurrency: str = setting(
        "INTEGRATIONS_CONNECTOR_CONCURRENCY",
        "--connector-concurrency",
        "Background syncs and probes one process runs at once per connector type: a number "
        "for every type, then 'type=n' exceptions, e.g. '8,google_calendar=4'",
        "8",
    )
    breaker_threshold: int = setting(
        "INTEGRATIONS_BREAKER_THRESHOLD",
        "--breaker-threshold",
        "Failures in a row that open an integration's breaker (the safety brake: auto-pause, "
        "then only connection probes), unless the integration sets its own (1-100)",
        5,
    )
    breaker_backoff: timedelta = setting(
        "INTEGRATIONS_BREAKER_BACKOFF",
        "--breaker-backoff",
        "Wait before retrying after a failure; doubles with each failure in a row",
        timedelta(seconds=30),
    )
    breaker_backoff_max: timedelta = setting(
        "INTEGRATIONS_BREAKER_BACKOFF_MAX",
        "--breaker-backoff-max",
        "Longest wait between retries while the breaker is closed",
        timedelta(minutes=15),
    )
    breaker_probe_interval: timedelta = setting(
        "INTEGRATIONS_BREAKER_PROBE_INTERVAL",
        "--breaker-probe-interval",
        "Wait before the first probe once the breaker opened (and before retrying an auth "
        "error); doubles with each failed probe",
        timedelta(minutes=1),
    )
    breaker_probe_interval_max: timedelta = setting(
        "INTEGRATIONS_BREAKER_PROBE_INTERVAL_MAX",
        "--breaker-probe-interval-max",
        "Longest wait between probes",
        timedelta(hours=1),
    )
    breaker_probe_timeout: timedelta = setting(
        "INTEGRATIONS_BREAKER_PROBE_TIMEOUT",
        "--breaker-probe-timeout",
        "How long a probe may take before it counts as a failure",
        timedelta(seconds=30),
    )
    schedule_jitter: float = setting(
        "INTEGRATIONS_SCHEDULE_JITTER",
        "--schedule-jitter",
        "Fraction (0-1) randomly taken off every automatic wait (sync interval, retry, probe, "
        "webhook retry) so a fleet does not stampede; waits only get shorter, so jitter never "
        "makes an integration late",
        0.1,
    )
    push: bool = setting(
        "INTEGRATIONS_PUSH",
        "--push",
        "Open push channels (Google Calendar events.watch) when --public-url is set, so changes "
        "sync within seconds and polling becomes a safety net (true/false). The URL must be "
        "HTTPS (plain http only on a loopback address, for the sandbox); Google POSTs to "
        "<public url>/push/<tenant>",
        True,
    )
    push_channel_ttl: timedelta = setting(
        "INTEGRATIONS_PUSH_CHANNEL_TTL",
        "--push-channel-ttl",
        "How long a push channel is asked to live (the provider may choose less); it is renewed "
        "before it expires",
        timedelta(days=7),
    )
    push_renew_before: timedelta = setting(
        "INTEGRATIONS_PUSH_RENEW_BEFORE",
        "--push-renew-before",
        "How long before its expiration a push channel is renewed (a new one opened, then the "
        "old one stopped)",
        timedelta(hours=1),
    )
    push_poll_interval: timedelta = setting(
        "INTEGRATIONS_PUSH_POLL_INTERVAL",
        "--push-poll-interval",
        "The safety net: how often an integration with a healthy push channel still polls (its "
        "own sync interval when that is longer)",
        timedelta(hours=6),
    )
    push_coalesce_window: timedelta = setting(
        "INTEGRATIONS_PUSH_COALESCE_WINDOW",
        "--push-coalesce-window",
        "A notification syncs its integration after at most this long; the notifications that "
        "come within it make the same sync",
        timedelta(seconds=1),
    )
    push_retry_interval: timedelta = setting(
        "INTEGRATIONS_PUSH_RETRY_INTERVAL",
        "--push-retry-interval",
        "After push failed for an integration (channel refused, changes no notification "
        "announced), how long it polls at its own interval before push is tried again",
        timedelta(hours=1),
    )
    tombstone_retention: timedelta = setting(
        "INTEGRATIONS_TOMBSTONE_RETENTION",
        "--tombstone-retention",
        "How long deleted records stay in the change feed as tombstones; a feed cursor older "
        "than the oldest purged tombstone answers FAILED_PRECONDITION CURSOR_EXPIRED",
        timedelta(days=30),
    )
    webhook_timeout: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_TIMEOUT",
        "--webhook-timeout",
        "Longest a webhook receiver may take to answer; longer counts as a failed attempt",
        timedelta(seconds=10),
    )
    webhook_sweep_interval: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_SWEEP_INTERVAL",
        "--webhook-sweep-interval",
        "How often each replica looks for webhook deliveries that are due (with the "
        "background loops on; see --scheduler)",
        timedelta(seconds=1),
    )
    webhook_concurrency: int = setting(
        "INTEGRATIONS_WEBHOOK_CONCURRENCY",
        "--webhook-concurrency",
        "Webhook deliveries one process sends at once",
        16,
    )
    webhook_retry_backoff: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_RETRY_BACKOFF",
        "--webhook-retry-backoff",
        "Wait before retrying a failed webhook delivery; doubles with each failure",
        timedelta(seconds=10),
    )
    webhook_retry_backoff_max: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_RETRY_BACKOFF_MAX",
        "--webhook-retry-backoff-max",
        "Longest wait between two attempts of a webhook delivery",
        timedelta(hours=6),
    )
    webhook_retry_horizon: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_RETRY_HORIZON",
        "--webhook-retry-horizon",
        "How long after its event a webhook delivery is retried before it is given up",
        timedelta(days=3),
    )
    webhook_disable_after: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_DISABLE_AFTER",
        "--webhook-disable-after",
        "A webhook endpoint whose every attempt failed for this long is disabled (with the "
        "reason, and a webhook.endpoint_disabled event); UpdateWebhook enables it again",
        timedelta(days=5),
    )
    webhook_delivery_retention: timedelta = setting(
        "INTEGRATIONS_WEBHOOK_DELIVERY_RETENTION",
        "--webhook-delivery-retention",
        "How long delivered and given-up webhook deliveries stay in the delivery log",
        timedelta(days=7),
    )
    purpose_header: str = setting(
        "INTEGRATIONS_PURPOSE_HEADER",
        "--purpose-header",
        "A request header that tells providers why each request is made (sync, probe, test), "
        "e.g. X-Sandbox-Purpose for the sandbox's request log; empty sends none",
        "",
    )
