"""The running application: settings, database, connectors and engines, wired once at
start-up and closed in reverse order. The API layer reaches everything through it."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from service.api.auth import Tenancy
from service.config import Settings
from service.connectors.registry import ConnectorRegistry
from service.crypto import KeyRing
from service.domain.model import Integration, TestOutcome
from service.engine.lifecycle import Clock, Lifecycle, utc_now
from service.storage.database import Database, EmbeddedPostgres

log = structlog.get_logger(__name__)


@dataclass
class App:
    """Everything a serving process holds."""

    settings: Settings
    db: Database
    connectors: ConnectorRegistry
    lifecycle: Lifecycle
    tenancy: Tenancy
    clock: Clock = utc_now
    breaker_threshold: int = 5
    embedded: EmbeddedPostgres | None = field(default=None)

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
            db = await Database.open(dsn, pool_size=settings.db_pool_size)
        except BaseException:
            if embedded is not None:
                await embedded.stop()
            raise
        keys = (KeyRing.parse(settings.encryption_keys) if settings.encryption_keys
                else KeyRing.local(settings.data_dir / "encryption.keys"))
        connectors = ConnectorRegistry.discover()
        lifecycle = Lifecycle(db, connectors, keys, settings.interval_bounds,
                              request_id_ttl=settings.request_id_ttl, clock=clock)
        return cls(settings=settings, db=db, connectors=connectors, lifecycle=lifecycle,
                   tenancy=Tenancy(settings.default_tenant, settings.api_keys), clock=clock,
                   embedded=embedded)

    async def close(self) -> None:
        """Close the pool, then stop the embedded server if this process started it."""
        await self.db.close()
        if self.embedded is not None:
            await self.embedded.stop()

    async def verify_if_testing(
            self, integration: Integration) -> tuple[Integration, TestOutcome | None]:
        """Run the connection test of an integration that a change put in TESTING.
        The connectors issue implements the test; until then it stays in TESTING."""
        return integration, None
