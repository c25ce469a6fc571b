"""One sync run, from its first page to its end.

The runner fetches a page, then commits in one transaction, under the integration's row lock:
the page's records, the new cursor, the record count, the run's counters and (on the last page)
the run's end with the integration's SUCCEEDED change. So a crash, a Pause or a Delete between
two pages loses and duplicates nothing: whatever committed is consistent with the stored
cursor, and the next sync continues from there. While a page commits, the next one is already
being fetched (one page ahead, never more): it commits only after, and only if, the one before
it did.

Before every commit the runner checks it may still write: the integration must still exist,
the run must still be RUNNING, and the outcome must still count (`outcomes.stale`: the run
holds the integration's claim, the integration is ACTIVE or ERROR with the configuration and
credentials the run started with). Otherwise the run ends CANCELLED and the fetched page is
dropped. The page write itself is fenced on the lease version too, so a stalled runner can
never move the cursor.

The run's end is recorded by `outcomes.Outcomes` (a success closes the breaker and puts the
regular interval back, a failure is counted and scheduled: retry, or probes once it opens).
When the process stops, the runner hands the run back after the page it is on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

import structlog

from service.clock import Clock
from service.connectors.base import Connector, Cursor, Page, PageKind, Source
from service.connectors.http import purpose
from service.domain.exceptions import NotFound
from service.domain.model import Integration
from service.domain.records import PreparedPage, RecordLimits
from service.domain.schedule import Attempt
from service.domain.status import SyncState, Trigger
from service.domain.sync import SyncOutcome, SyncRun
from service.engine import changes
from service.engine.outcomes import Attempted, Outcomes, stale
from service.engine.providers import Providers
from service.observability import metrics, tracing
from service.storage.credentials import StoredCredentials
from service.storage.database import Database, Tx
from service.storage.errors import Gone, LeaseLost
from service.storage.sync import PageWrite

log = structlog.get_logger(__name__)

#: Bytes a record takes to prepare, roughly: what sends a page of more than about a hundred
#: records to a worker process (service.offload) rather than preparing it on the loop.
RECORD_SIZE_GUESS = 512


@dataclass(frozen=True)
class SyncCursor:
    """What `integrations.cursor` holds: the connector's position, the full listing in
    progress, and the configuration and account they belong to."""

    position: Cursor | None = None
    listing: UUID | None = None
    #: The digest of the provider account whose credentials made it (None: not known).
    account: str | None = None

    @classmethod
    def load(
        cls,
        stored: Mapping[str, Any] | None,
        config: Mapping[str, Any],
        account: str | None = None,
    ) -> SyncCursor:
        """The stored cursor; from scratch when none is stored, the configuration changed (a
        cursor of another calendar or URL means nothing here) or the credentials are another
        account's (its sync token, and what it could see, are not this account's). New
        credentials of the same account, or of an account nobody could tell, continue."""
        if not stored or stored.get("config") != config_digest(config):
            return cls(account=account)
        made_by = stored.get("account")
        if made_by and account and made_by != account:
            return cls(account=account)
        listing = stored.get("listing")
        return cls(stored.get("position"), UUID(listing) if listing else None, account or made_by)

    def dump(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "config": config_digest(config),
            "position": self.position,
            "listing": str(self.listing) if self.listing else None,
            "account": self.account,
        }


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Opened:
    """What the transaction that started a run read for it: where it continues, with whose
    credentials."""

    cursor: Mapping[str, Any] | None
    credentials: StoredCredentials | None


class SyncRunner:
    """Runs one sync run to its end; `run()` returns the ended run."""

    def __init__(
        self,
        db: Database,
        providers: Providers,
        outcomes: Outcomes,
        *,
        run: SyncRun,
        integration: Integration,
        actor: str,
        opened: Opened,
        lease: timedelta,
        clock: Clock,
        stopping: asyncio.Event | None = None,
        limits: RecordLimits | None = None,
        commit_records: int = 2500,
    ) -> None:
        #: The cursor and credentials, read by the start's transaction under its lock.
        self.opened = opened
        self.limits = limits or RecordLimits()
        self.commit_records = commit_records
        #: Set when the process stops: hand the run back after the current page.
        self.stopping = stopping or asyncio.Event()
        self.db = db
        self.providers = providers
        self.outcomes = outcomes
        self.sync_run = run
        self.integration = integration
        self.attempted = Attempted(Attempt.SYNC, integration, run.lease_version)
        self.actor = actor
        self.lease = lease
        self.clock = clock
        self.log = log.bind(
            tenant_id=run.tenant_id,
            integration_id=str(run.integration_id),
            sync_run_id=str(run.id),
        )

    async def run(self) -> SyncRun:
        heartbeat = asyncio.create_task(self._heartbeat())
        started = time.monotonic()
        try:
            with (
                purpose("sync"),
                metrics.in_flight("sync"),
                tracing.span(
                    "sync_run", connector=self.integration.connector_type, **self._trace_ids()
                ),
            ):
                ended = await self._run()
        except asyncio.CancelledError:
            await asyncio.shield(self._stop("the service shut down before it finished"))
            raise
        finally:
            heartbeat.cancel()
        self.log.info(
            "sync_run_ended",
            outcome=ended.outcome.value,
            pages=ended.pages,
            records_upserted=ended.records_upserted,
            records_deleted=ended.records_deleted,
            note=ended.note or None,
        )
        metrics.sync_run_ended(self.integration.connector_type, ended, time.monotonic() - started)
        return ended

    def _trace_ids(self) -> dict[str, str]:
        run = self.sync_run
        return {"sync_run_id": str(run.id), "trigger": run.trigger.value}

    async def _run(self) -> SyncRun:
        try:
            opened = self.opened
            credentials = opened.credentials
            connector, source = await self.providers.open(self.integration, credentials)
            account = credentials.account if credentials else None
            cursor = SyncCursor.load(opened.cursor, self.integration.config, account)
        except Exception as exc:
            return await self._fail(exc)
        # The next page is fetched and made storable while the current one commits, so the
        # provider, this process and PostgreSQL work at once. Pages still commit one at a
        # time, in order, each with its cursor and behind the fence; a page fetched ahead of
        # a commit that fails, ends or stops the run is dropped, as a crash would drop it.
        ahead: asyncio.Task[tuple[Page, PreparedPage]] | None = self._fetch(
            connector, source, cursor.position
        )
        try:
            while ahead is not None:
                try:
                    with tracing.span("sync_page", page=self.sync_run.pages + 1):
                        page, prepared = await ahead
                        more = not page.last and not self.stopping.is_set()
                        ahead = self._fetch(connector, source, page.cursor) if more else None
                        cursor, ended = await self._commit(page, prepared, cursor)
                except Gone:
                    return self._gone()  # deleted under us (the row lock makes it a last resort)
                except LeaseLost:
                    return await self._lost()
                except Exception as exc:
                    return await self._fail(exc)
                if ended is not None:
                    return ended
                if self.stopping.is_set():
                    note = f"the service shut down; handed back after page {self.sync_run.pages}"
                    return await self._stop(note) or await self._lost()
            raise AssertionError("the last page ends the run")
        finally:
            if ahead is not None:
                ahead.cancel()

    def _fetch(
        self, connector: Connector, source: Source, position: Cursor | None
    ) -> asyncio.Task[tuple[Page, PreparedPage]]:
        """Fetch the page at `position` with its records made storable (connectors do it where
        they parse the answer: a big one in a worker process, service.offload), as a task."""

        async def fetch() -> tuple[Page, PreparedPage]:
            page = await connector.fetch(source, position)
            if page.prepared is None:  # not made storable where it was parsed (a plugin's page)
                page = await self.providers.offload.run(
                    "prepare",
                    len(page.records) * RECORD_SIZE_GUESS,
                    page.prepared_with,
                    self.limits,
                )
            assert page.prepared is not None
            return page, page.prepared

        task = asyncio.create_task(fetch())
        # Dropped unread when the run ends first: its failure is no news, never a warning.
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def _commit(
        self, page: Page, prepared: PreparedPage, cursor: SyncCursor
    ) -> tuple[SyncCursor, SyncRun | None]:
        """Write one page with its cursor; the ended run when this was the last page (or the
        run had to stop). A page bigger than `commit_records` is written in parts: each part
        but the last keeps the cursor before the page, so a crash in between fetches the page
        again and loses nothing."""
        listing = _listing(page, cursor)
        after = SyncCursor(page.cursor, None if page.last else listing, cursor.account)
        count, parts = _parts(prepared, self.commit_records)
        for n, (records, deleted) in enumerate(parts):
            final = n == count - 1
            write = PageWrite(
                records=records,
                deleted=deleted,
                listing=listing,
                ends_listing=final and page.last and page.full and listing is not None,
                cursor=(
                    after if final else SyncCursor(cursor.position, listing, cursor.account)
                ).dump(self.integration.config),
                full=page.full,
                ends_page=final,
                rejected=prepared.rejected if n == 0 else 0,
                rejected_example=prepared.example if n == 0 else "",
            )
            ended = await self._write(write, last=final and page.last)
            if ended is not None:
                return cursor, ended
        return after, None

    async def _write(self, write: PageWrite, *, last: bool) -> SyncRun | None:
        """Commit one write; with `last`, end the run SUCCEEDED with it. The ended run when
        the run ended (or had to stop)."""
        async with self.db.transaction() as tx:
            current = await self._hold(tx)
            if isinstance(current, SyncRun):
                return current
            now = self.clock()  # once the lock is ours (see SyncEngine._start)
            committed = await tx.sync.commit_page(
                self.sync_run, write, now=now, lease_expires_at=now + self.lease, finish=last
            )
            self.sync_run = ended = committed.run
            if not last:
                return None
            await self.outcomes.record(
                tx,
                current,
                self.attempted,
                error=None,
                what=f"sync run #{ended.seq} succeeded: {_counts(ended)}",
                actor=self.actor,
                now=now,
                also=lambda i: i.replace(
                    sync_state=SyncState.SYNCED,
                    record_count=committed.record_count,
                    last_synced_at=now,
                ),
                run=ended,
            )
            return ended

    async def _fail(self, exc: Exception) -> SyncRun:
        """End the run FAILED with the classified error, and move the integration by it."""
        error = self.providers.classify(exc, self.integration, "sync")
        async with self.db.transaction() as tx:
            current = await self._hold(tx)
            if isinstance(current, SyncRun):
                return current
            now = self.clock()
            ended = await tx.sync.finish_run(self.sync_run, SyncOutcome.FAILED, now, error=error)
            assert ended is not None
            await self.outcomes.record(
                tx,
                current,
                self.attempted,
                error=error,
                what=f"sync run #{ended.seq}",
                actor=self.actor,
                now=now,
            )
            return ended

    async def _stop(self, note: str) -> SyncRun | None:
        """End the run CANCELLED because this process stops, and hand the work back: the
        integration is no longer SYNCING and is due at once, so whichever replica sweeps next
        continues from the cursor. Best effort: if it fails, the lease runs out and the
        schedule (or the next Sync) takes over."""
        try:
            async with self.db.transaction() as tx:
                current = await self._hold(tx)
                if isinstance(current, SyncRun):
                    return current
                now = self.clock()
                ended = await tx.sync.finish_run(
                    self.sync_run, SyncOutcome.CANCELLED, now, note=note
                )
                assert ended is not None
                await changes.apply(
                    tx,
                    current,
                    Trigger.SYNC_STOPPED,
                    actor=self.actor,
                    reason=f"sync run #{ended.seq} stopped: {note}",
                    now=now,
                    mutate=lambda i: i.replace(sync_state=SyncState.SYNCED, next_sync_at=now),
                )
                return ended
        except Exception:
            self.log.warning("sync_run_not_stopped", exc_info=True)
            return None

    async def _lost(self) -> SyncRun:
        """The run as it stands after it lost its claim (or could not record its end)."""
        try:
            async with self.db.connection() as tx:
                found = await tx.sync.get_run(self.sync_run.tenant_id, self.sync_run.id)
        except Exception:
            found = None
        return found or dataclasses.replace(
            self.sync_run,
            outcome=SyncOutcome.CANCELLED,
            ended_at=self.clock(),
            note="its claim was taken over",
        )

    async def _hold(self, tx: Tx) -> Integration | SyncRun:
        """Lock the integration and read the run. The integration when the run may write;
        else the run's end (CANCELLED here with the reason, or as another runner ended it)."""
        mine = self.sync_run
        try:
            held, run = await tx.sync.hold(mine.tenant_id, mine.integration_id, mine.id)
        except NotFound:
            return self._gone()
        if run is None:
            return self._gone()
        if not run.running:
            return run  # taken over after its lease expired: the new run owns the cursor
        note = stale(held, self.attempted)
        if note is None:
            return held.integration
        if held.lease_version != run.lease_version:
            # This runner stalled past its lease and another worker claimed the integration
            # (e.g. for a probe): its page must not land.
            self.log.warning("sync_run_fenced", note=note)
        ended = await tx.sync.finish_run(run, SyncOutcome.CANCELLED, self.clock(), note=note)
        assert ended is not None
        return ended

    def _gone(self) -> SyncRun:
        # The run's row went with the integration (ON DELETE CASCADE): report, store nothing.
        return dataclasses.replace(
            self.sync_run,
            outcome=SyncOutcome.CANCELLED,
            ended_at=self.clock(),
            note="the integration was deleted",
        )

    async def _heartbeat(self) -> None:
        """Renew the lease while a page takes long; page commits renew it too."""
        while True:
            await asyncio.sleep(self.lease.total_seconds() / 3)
            try:
                async with self.db.connection() as tx:
                    await tx.sync.renew_lease(self.sync_run, self.clock() + self.lease)
            except Exception:
                self.log.warning("sync_lease_not_renewed", exc_info=True)


def _parts(
    prepared: PreparedPage, size: int
) -> tuple[int, Iterator[tuple[dict[str, str], list[str]]]]:
    """How many parts of at most `size` the page's records and deletions make (at least one),
    and the parts, made as they are taken: a packed page's chunks are unpickled one at a time,
    on the loop, between the commits."""
    total = prepared.count
    record_parts = max(1, -(-total // size))
    room = size - (total - (record_parts - 1) * size)  # left in the last part of records
    deleted = prepared.deleted
    rest = deleted[room:]

    def parts() -> Iterator[tuple[dict[str, str], list[str]]]:
        items = (item for chunk in prepared.chunks() for item in chunk.items())
        for n in range(record_parts):
            records = dict(itertools.islice(items, size))
            yield records, deleted[:room] if n == record_parts - 1 else []
        for i in range(0, len(rest), size):
            yield {}, rest[i : i + size]

    return record_parts + -(-len(rest) // size), parts()


def _listing(page: Page, cursor: SyncCursor) -> UUID | None:
    """The full listing a page belongs to (None for a page of changes)."""
    if page.kind is PageKind.FULL_START:
        return uuid.uuid4()
    if page.kind is PageKind.FULL_NEXT:
        # A continuation whose start we never saw cannot tell what is gone: no clean-up.
        return cursor.listing
    return None


def _counts(run: SyncRun) -> str:
    pages = "page" if run.pages == 1 else "pages"
    return (
        f"{run.pages} {pages}, {run.records_upserted} records written, "
        f"{run.records_deleted} deleted" + (", full resync" if run.full_resync else "")
    )
