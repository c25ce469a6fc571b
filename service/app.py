"""The running application: settings, database, connectors and engines, wired once at
start-up and closed in reverse order. The composition root: it builds everything and holds
it for the API layer, and does nothing else."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from service import offload
from service.background import cancel_and_wait
from service.clock import Clock, utc_now
from service.config import Settings
from service.connectors.http import HttpClient, HttpPolicy
from service.connectors.registry import ConnectorRegistry
from service.domain.schedule import Schedule
from service.engine.connection_tester import ConnectionTester
from service.engine.feed_retention import FeedRetention
from service.engine.lifecycle import Lifecycle
from service.engine.notifications import Notifications
from service.engine.outcomes import Outcomes
from service.engine.probes import Prober
from service.engine.providers import Providers
from service.engine.push import PushReconciler
from service.engine.record_feed import RecordFeed
from service.engine.retention import HistoryRetention
from service.engine.scheduler import Scheduler, SchedulerSettings
from service.engine.sync import SyncEngine
from service.engine.watch import WatchHub, WatchSettings
from service.engine.webhook_sender import SenderSettings, WebhookSender
from service.engine.webhooks import WebhookEndpoints
from service.oauth.providers import OAuthClient, OAuthSetup
from service.oauth.reauthorization import Reauthorization
from service.oauth.refresh import TokenRefresher
from service.oauth.revocation import Revoker
from service.oauth.sign_in import SignIns
from service.oauth.token_endpoint import TokenEndpoint
from service.observability import gauges, metrics
from service.storage.database import Database, EmbeddedPostgres
from service.tenancy import Tenancy

log = structlog.get_logger(__name__)


@dataclass
class App:
    """Everything a serving process holds."""

    settings: Settings
    db: Database
    connectors: ConnectorRegistry
    lifecycle: Lifecycle
    tenancy: Tenancy
    watch: WatchHub
    retention: HistoryRetention
    providers: Providers
    tester: ConnectionTester
    syncs: SyncEngine
    refresher: TokenRefresher
    #: Revokes tokens the service lets go of (Delete, another account's Reauthorize).
    revoker: Revoker
    reauthorization: Reauthorization
    scheduler: Scheduler
    #: The breaker policy every attempt is judged by (and each integration's threshold).
    schedule: Schedule
    #: Opens, renews and stops push channels (run by the scheduler's loop).
    push: PushReconciler
    #: Receives push notifications (served on the callback listener).
    notifications: Notifications
    #: Synced records and their change feed, as consumers read them.
    feed: RecordFeed
    #: Tombstones and webhook delivery logs past their windows go.
    feed_retention: FeedRetention
    #: The tenants' webhook endpoints.
    webhooks: WebhookEndpoints
    #: Sends the webhook outbox (runs with the background loops).
    sender: WebhookSender
    clock: Clock = utc_now
    embedded: EmbeddedPostgres | None = field(default=None)
    #: Keeps the fleet gauges (integrations by status, breakers, scheduler lag) fresh.
    fleet_gauges: asyncio.Task[None] | None = field(default=None)

    @classmethod
    async def start(cls, settings: Settings, *, clock: Clock = utc_now) -> App:
        """Connect (starting the embedded PostgreSQL when no DATABASE_URL is set), migrate,
        and wire the engines."""
        embedded = None
        dsn = settings.database_url
        if not dsn:
            embedded = EmbeddedPostgres(settings.data_dir)
            dsn = await embedded.start()
        try:
            db = await Database.open(dsn, keys=settings.key_ring(), pool_size=settings.db_pool_size)
        except BaseException:
            if embedded is not None:
                await embedded.stop()
            raise
        metrics.pool_gauges(db.pool_size, db.idle_connections, settings.db_pool_size)
        connectors = ConnectorRegistry.discover()
        lifecycle = Lifecycle(
            db,
            connectors,
            settings.interval_bounds,
            request_id_ttl=settings.request_id_ttl,
            clock=clock,
        )
        watch = WatchHub(
            db,
            WatchSettings(
                heartbeat_interval=settings.watch_heartbeat_interval,
                buffer_size=settings.watch_buffer_size,
                poll_interval=settings.watch_poll_interval,
                max_streams=settings.watch_max_streams,
            ),
        )
        await watch.start()
        metrics.WATCH_SUBSCRIBERS.set_function(lambda: len(watch.streams))
        retention = HistoryRetention(
            db,
            settings.history_retention,
            runs_window=settings.sync_run_retention,
            clock=clock,
        )
        retention.start()
        http = HttpClient.open(
            HttpPolicy(
                timeout=settings.provider_timeout,
                max_body_bytes=settings.max_response_bytes,
                allow_private_networks=settings.allow_private_networks,
                purpose_header=settings.purpose_header,
            )
        )
        oauth = OAuthSetup(oauth_clients(settings), settings.oauth_trusted_origins.split(","))
        token_endpoint = TokenEndpoint(http.for_connector("oauth"))
        # A refresh waits for another replica's at most as long as that one may take.
        refresher = TokenRefresher(
            db,
            token_endpoint,
            oauth,
            connectors,
            clock,
            lock_wait=2 * settings.provider_timeout,
            max_concurrent=max(1, settings.db_pool_size // 2),
        )
        providers = Providers(
            connectors,
            http,
            db,
            clock,
            page_size=settings.sync_page_size,
            tokens=refresher.tokens_for,
            offload=offload.shared(settings.cpu_workers),
            limits=settings.record_limits,
        )
        # One breaker policy (and jitter) for every attempt: syncs, tests and probes.
        schedule = Schedule(settings.breaker_policy)
        push_policy = dataclasses.replace(settings.push_policy, types=connectors.pushing)
        outcomes = Outcomes(schedule, push_policy)
        worker = worker_name()
        tester = ConnectionTester(db, providers, outcomes, clock)
        syncs = SyncEngine(
            db,
            providers,
            outcomes,
            lease=settings.sync_lease,
            clock=clock,
            worker=worker,
            limits=settings.record_limits,
            commit_records=settings.sync_commit_records,
        )
        push = PushReconciler(
            db, providers, push_policy, clock, oauth=oauth, token_endpoint=token_endpoint
        )
        scheduler = Scheduler(
            db,
            syncs,
            Prober(db, providers, outcomes, clock),
            connectors.types,
            SchedulerSettings(
                sweep_interval=settings.scheduler_sweep_interval,
                concurrency=settings.sync_concurrency,
                connector_limits=settings.connector_limits,
                sync_claim=settings.sync_lease,
                probe_claim=settings.breaker_probe_timeout + settings.sync_lease,
            ),
            clock=clock,
            worker=worker,
            push=push,
        )
        revoker = Revoker(token_endpoint, oauth, connectors)
        reauthorization = Reauthorization(
            db,
            connectors,
            providers,
            tester,
            oauth,
            SignIns(db, clock, settings.sign_in_ttl),
            token_endpoint,
            clock,
            revoker,
            return_origins=settings.return_origins,
        )
        feed_retention = FeedRetention(
            db,
            settings.tombstone_retention,
            delivery_window=settings.webhook_delivery_retention,
            clock=clock,
        )
        feed_retention.start()
        # Receivers get their own connection pool and limits, behind the same network guard.
        webhook_http = HttpClient.open(
            HttpPolicy(
                timeout=settings.webhook_timeout,
                allow_private_networks=settings.allow_private_networks,
                max_redirects=0,
            )
        )
        sender = WebhookSender(
            db,
            webhook_http,
            SenderSettings(
                sweep_interval=settings.webhook_sweep_interval,
                concurrency=settings.webhook_concurrency,
                claim=settings.webhook_timeout + timedelta(seconds=30),
                policy=settings.webhook_retry_policy,
            ),
            clock=clock,
            worker=worker,
        )
        app = cls(
            settings=settings,
            db=db,
            connectors=connectors,
            lifecycle=lifecycle,
            tenancy=Tenancy(
                settings.default_tenant, settings.api_keys, settings.tls_client_tenants
            ),
            clock=clock,
            watch=watch,
            retention=retention,
            providers=providers,
            tester=tester,
            refresher=refresher,
            revoker=revoker,
            reauthorization=reauthorization,
            syncs=syncs,
            scheduler=scheduler,
            schedule=schedule,
            push=push,
            notifications=Notifications(db, push_policy, clock, wake=scheduler.wake_at),
            feed=RecordFeed(db, retention=settings.tombstone_retention),
            feed_retention=feed_retention,
            webhooks=WebhookEndpoints(
                db, allow_private_networks=settings.allow_private_networks, clock=clock
            ),
            sender=sender,
            embedded=embedded,
        )
        if settings.scheduler:
            scheduler.start()
            sender.start()
        app.fleet_gauges = asyncio.create_task(gauges.keep_fresh(db, clock), name="fleet-gauges")
        return app

    async def close(self) -> None:
        """Close the pool, then stop the embedded server if this process started it."""
        # Watch streams and background jobs first: they read through the pool.
        await cancel_and_wait(self.fleet_gauges)
        await self.watch.stop()
        await self.retention.stop()
        await self.feed_retention.stop()
        # Background work stops while the pool is still open: no more claims; probes and
        # runs finish the request or page they are on within the grace, then hand the rest
        # back (runs end CANCELLED, "shut down") for another replica to continue at once.
        grace = self.settings.shutdown_grace.total_seconds()
        await asyncio.gather(
            self.scheduler.stop(grace), self.syncs.close(grace), self.sender.stop(grace)
        )
        # Refreshes in flight finish (and commit their rotated tokens) before HTTP closes;
        # so do revocations, within the grace.
        await self.refresher.close()
        await self.revoker.close(grace)
        await self.providers.http.close()
        await self.sender.http.close()
        await self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()


def oauth_clients(settings: Settings) -> dict[str, OAuthClient]:
    """The deployment's OAuth clients by provider name (see service.oauth.providers)."""
    clients = {}
    if settings.google_client_id:
        clients["google"] = OAuthClient(settings.google_client_id, settings.google_client_secret)
    return clients


def worker_name() -> str:
    """This process among the replicas: host, pid and a random tag (pids repeat across
    containers and restarts). Recorded on claims and sync runs, for operators."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
