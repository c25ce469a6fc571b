"""Whether this process should receive traffic: the database answers, its schema is this
build's, the LISTEN connection (WatchStatus across replicas) is up, and the process is not
draining. `/readyz` asks on every request; `follow()` re-checks periodically and reports
changes (the gRPC health service and the `integrations_ready` gauge follow it)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from service.observability import metrics
from service.storage.database import Database
from service.storage.stats import schema_current
from service.storage.watch_listener import ChangeListener

log = structlog.get_logger(__name__)

#: A database check slower than this counts as a failure (readiness must answer quickly).
CHECK_TIMEOUT = 2.0


@dataclass(frozen=True)
class Report:
    """One readiness check: each condition, and what is wrong if anything is."""

    database: bool
    migrations: bool
    listener: bool
    draining: bool
    problem: str = ""

    @property
    def ready(self) -> bool:
        return self.database and self.migrations and self.listener and not self.draining

    def as_dict(self) -> dict[str, object]:
        checks = {
            "database": self.database,
            "migrations": self.migrations,
            "listen_connection": self.listener,
            "not_draining": not self.draining,
        }
        return {"ready": self.ready, "checks": checks, "problem": self.problem or None}


class Readiness:
    """Checks readiness; `drain()` makes it false for good (the process is stopping)."""

    def __init__(self, db: Database, listener: ChangeListener) -> None:
        self.db = db
        self.listener = listener
        self.draining = False
        self.last: Report | None = None

    def drain(self) -> None:
        self.draining = True
        metrics.READY.set(0)

    async def check(self) -> Report:
        database, migrations, problem = False, False, ""
        try:
            async with asyncio.timeout(CHECK_TIMEOUT):
                migrations = await schema_current(self.db)
            database = True
            if not migrations:
                problem = "the database schema is older than this build (migrations pending)"
        except TimeoutError:
            problem = f"the database did not answer within {CHECK_TIMEOUT:g}s"
        except Exception as exc:  # any failure to reach it: refused, reset, shut down
            problem = f"the database cannot be reached: {type(exc).__name__}"
        listener = self.listener.connected
        if database and not listener:
            problem = "the LISTEN connection (WatchStatus across replicas) is down"
        if self.draining:
            problem = "the process is shutting down"
        report = Report(database, migrations, listener, self.draining, problem)
        metrics.READY.set(1 if report.ready else 0)
        self.last = report
        return report

    async def follow(self, interval: float, on_change: Callable[[bool], object]) -> None:
        """Check every `interval` seconds and call `on_change(ready)` when it flips (and once
        at the start); runs until cancelled."""
        known: bool | None = None
        while True:
            report = await self.check()
            if report.ready != known:
                first, known = known is None, report.ready
                if known:
                    log.info("readiness_ready" if first else "readiness_ready_again")
                else:
                    log.warning("not_ready", problem=report.problem)
                on_change(known)
            await asyncio.sleep(interval)
