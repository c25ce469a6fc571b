"""Settings of the work itself: the watch streams, fetching from providers, syncs, sign-ins
and the CPU workers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from service.config.values import setting


@dataclass(frozen=True)
class Syncing:
    """Settings of the work itself: the watch streams, fetching from providers, syncs, sign-ins"""

    watch_heartbeat_interval: timedelta = setting(
        "INTEGRATIONS_WATCH_HEARTBEAT_INTERVAL",
        "--watch-heartbeat-interval",
        "How long a WatchStatus stream may stay quiet before a heartbeat is sent",
        timedelta(seconds=30),
    )
    watch_buffer_size: int = setting(
        "INTEGRATIONS_WATCH_BUFFER_SIZE",
        "--watch-buffer-size",
        "Changes buffered per WatchStatus stream; a subscriber further behind is ended with "
        "RESOURCE_EXHAUSTED and resumes from its last revision",
        1000,
    )
    watch_max_streams: int = setting(
        "INTEGRATIONS_WATCH_MAX_STREAMS",
        "--watch-max-streams",
        "WatchStatus streams one process serves at once; more are refused with "
        "RESOURCE_EXHAUSTED (WATCH_STREAMS_EXHAUSTED, with a RetryInfo) and the client retries "
        "(on this replica or another)",
        4000,
    )
    watch_poll_interval: timedelta = setting(
        "INTEGRATIONS_WATCH_POLL_INTERVAL",
        "--watch-poll-interval",
        "How often watched history is re-read without a notification (the safety net under "
        "LISTEN/NOTIFY), and the listener connection is checked",
        timedelta(seconds=5),
    )
    history_retention: timedelta = setting(
        "INTEGRATIONS_HISTORY_RETENTION",
        "--history-retention",
        "How long status-change history is kept: WatchStatus resumes from revisions within it "
        "and ListEvents shows it (each integration's latest event is always kept)",
        timedelta(days=7),
    )
    allow_private_networks: bool = setting(
        "INTEGRATIONS_ALLOW_PRIVATE_NETWORKS",
        "--allow-private-networks",
        "Let connectors fetch URLs on private, loopback and link-local addresses (true/false); "
        "keep false in production, turn on for the local sandbox",
        False,
    )
    provider_timeout: timedelta = setting(
        "INTEGRATIONS_PROVIDER_TIMEOUT",
        "--provider-timeout",
        "Longest a request to a provider may take, reading the whole answer included",
        timedelta(seconds=30),
    )
    sync_page_size: int = setting(
        "INTEGRATIONS_SYNC_PAGE_SIZE",
        "--sync-page-size",
        "Records per page asked of providers that let the client choose (Google: 1-2500)",
        250,
    )
    max_response_bytes: int = setting(
        "INTEGRATIONS_MAX_RESPONSE_BYTES",
        "--max-response-bytes",
        "Largest answer read from a provider (a feed, a page of records); a bigger one fails "
        "the sync as a malformed answer instead of exhausting memory",
        32 * 1024 * 1024,
    )
    max_record_bytes: int = setting(
        "INTEGRATIONS_MAX_RECORD_BYTES",
        "--max-record-bytes",
        "Largest synced record stored (its JSON); a bigger one is skipped and counted on the "
        "sync run (records_rejected) while the rest of the page is stored",
        1024 * 1024,
    )
    sync_commit_records: int = setting(
        "INTEGRATIONS_SYNC_COMMIT_RECORDS",
        "--sync-commit-records",
        "Most records written in one transaction: a bigger page (a whole iCalendar feed) is "
        "committed in parts of this size, each with its place in the sync",
        2500,
    )
    sync_lease: timedelta = setting(
        "INTEGRATIONS_SYNC_LEASE",
        "--sync-lease",
        "How long a sync run stays claimed without a sign of life; a run whose process died is "
        "taken over after this, by the scheduler of another replica within one more sweep (or "
        "by the next Sync)",
        timedelta(minutes=2),
    )
    callback_listen: str = setting(
        "INTEGRATIONS_CALLBACK_LISTEN",
        "--callback-listen",
        "HTTP listen address (host:port) of the OAuth sign-in callback; port 0 picks a free "
        "port, 'off' serves no callback (sign-ins are then refused here)",
        "127.0.0.1:0",
    )
    public_url: str = setting(
        "INTEGRATIONS_PUBLIC_URL",
        "--public-url",
        "Base URL at which browsers reach the callback, the same for every replica (e.g. "
        "https://integrations.example.com); empty: http://<callback address>",
        "",
    )
    sign_in_ttl: timedelta = setting(
        "INTEGRATIONS_SIGN_IN_TTL",
        "--sign-in-ttl",
        "How long a started OAuth sign-in can be completed",
        timedelta(minutes=10),
    )
    google_client_id: str = setting(
        "INTEGRATIONS_GOOGLE_CLIENT_ID",
        "--google-client-id",
        "This deployment's OAuth client id at Google (Google Calendar sign-in and token "
        "refresh); empty: no sign-in, expired tokens are not refreshed",
        "",
    )
    google_client_secret: str = setting(
        "INTEGRATIONS_GOOGLE_CLIENT_SECRET",
        "--google-client-secret",
        "The secret of that OAuth client (prefer the env var: flags show in process lists)",
        "",
        secret=True,
    )
    sign_in_return_origins: str = setting(
        "INTEGRATIONS_SIGN_IN_RETURN_ORIGINS",
        "--sign-in-return-origins",
        "Origins (scheme://host[:port], comma-separated) a sign-in's return_url may be on, "
        "e.g. https://app.example.com; empty: any http(s) URL",
        "",
    )
    oauth_trusted_origins: str = setting(
        "INTEGRATIONS_OAUTH_TRUSTED_ORIGINS",
        "--oauth-trusted-origins",
        "Origins (scheme://host:port, comma-separated) an integration's token_url / "
        "authorization_url override may point at, e.g. a sandbox; a provider's own are always "
        "trusted. The OAuth client secret is sent to the token URL: keep empty in production",
        "",
    )

    cpu_workers: int = setting(
        "INTEGRATIONS_CPU_WORKERS",
        "--cpu-workers",
        "Processes that parse big provider answers (a feed, a page) and make big pages of "
        "records storable, so the event loop never waits for them; 0 does it all in the "
        "server process (only for tests and tiny deployments)",
        1,
    )
    sync_run_retention: timedelta = setting(
        "INTEGRATIONS_SYNC_RUN_RETENTION",
        "--sync-run-retention",
        "How long ended sync runs stay listable in ListSyncRuns (each integration's latest run "
        "is always kept)",
        timedelta(days=30),
    )
