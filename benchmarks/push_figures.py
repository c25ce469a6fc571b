"""Push in figures: how soon a provider change reaches ListRecords, and what an idle calendar
costs a day. Self-contained: each figure starts the service (App + its callback listener) on a
fresh database of the PostgreSQL server it is given, against an in-process sandbox Google.

- `change_delays`: with push, the seconds from a change at the provider to the changed record
  in ListRecords (read every 10 ms), measured with the running scheduler loop and the default
  push settings (1 s coalescing window). Target: p95 < 2 s.
- `requests_per_idle_calendar_per_day`: the Google requests an idle calendar causes (polls,
  channel opening and renewal), simulated over days of a moved clock after the calendars
  settled, with and without push (the baseline: one poll per 15-minute interval, 96 a day,
  a little more with the schedule's jitter). Target with push: <= 6.

Sizes: "smoke" (seconds, for CI) and "full". Section g of `python -m benchmarks`
(`benchmarks/pushing.py`) reports them beside polling; `python -m benchmarks.push_figures
[smoke|full]` prints them as JSON (it starts an embedded PostgreSQL of its own).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from google.protobuf import duration_pb2
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

from sandbox import Sandbox, SandboxState
from sandbox.clock import Clock
from service.api.server import Server
from service.app import App
from service.clock import utc_now
from service.config import Settings
from service.storage.database import EmbeddedPostgres
from tests.support import postgres
from tests.support.rpc import Stub

TOKEN = "bench-token"
INTERVAL = timedelta(minutes=15)


@dataclass(frozen=True)
class Size:
    """How much to measure."""

    #: Changes timed for the delay figure.
    changes: int
    #: Idle calendars in the cost figure, and the simulated days (and clock step).
    calendars: int
    days: int
    step: timedelta


SIZES = {
    "smoke": Size(changes=4, calendars=2, days=1, step=timedelta(minutes=15)),
    # Eight days: a channel's renewal (7-day TTL) falls inside.
    "full": Size(changes=40, calendars=5, days=8, step=timedelta(minutes=5)),
}


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _settings(database_url: str, data_dir: Path, *, push: bool, **changes: object) -> Settings:
    port = _free_port()
    key = base64.b64encode(os.urandom(32)).decode()
    return replace(
        Settings(),
        database_url=database_url,
        data_dir=data_dir,
        encryption_keys=f"bench:{key}",
        allow_private_networks=True,
        callback_listen=f"127.0.0.1:{port}",
        public_url=f"http://127.0.0.1:{port}" if push else "",
        shutdown_grace=timedelta(seconds=1),
        **changes,  # type: ignore[arg-type]
    )


@contextlib.asynccontextmanager
async def _running(
    settings: Settings, clock: Clock, calendars: int
) -> AsyncIterator[tuple[App, Sandbox, Stub, list[str]]]:
    """The service (its loop as the settings say) and a sandbox with `calendars` calendars of
    three events each, one integration per calendar."""
    async with Sandbox(SandboxState(clock=clock)) as sb:
        sb.state.add_access_token(TOKEN, expires_in=60 * 86400)
        app = await App.start(settings, clock=clock)
        server = Server(app)
        await server.start("127.0.0.1:0")
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            stub = Stub(channel)
            idents = []
            for n in range(calendars):
                calendar = f"cal-{n}"
                sb.state.google.add_calendar(calendar, f"Calendar {n}")
                for e in range(3):
                    _put(sb, calendar, f"e{e}", f"Event {e}")
                created = await stub.Create(
                    api.CreateRequest(
                        display_name=f"Calendar {n}",
                        connector_type="google_calendar",
                        config=pb.ConnectorConfig(
                            google_calendar=pb.GoogleCalendarConfig(
                                calendar_id=calendar, api_base_url=f"{sb.url}/calendar/v3"
                            )
                        ),
                        credentials=pb.Credentials(bearer_token=TOKEN),
                        sync_interval=duration_pb2.Duration(seconds=int(INTERVAL.total_seconds())),
                    )
                )
                idents.append(created.integration.id)
            yield app, sb, stub, idents
        finally:
            await channel.close()
            await server.stop(grace=1)
            await app.close()


def _put(sb: Sandbox, calendar: str, event_id: str, summary: str) -> None:
    start = datetime(2026, 2, 1, 9, tzinfo=UTC)
    sb.state.google.put_event(
        calendar, event_id, summary=summary, start=start, end=start + timedelta(hours=1)
    )


async def _settled(stub: Stub, ident: str) -> bool:
    """Channel open, catch-up sync done: the next poll is the safety net's, hours away."""
    got = (await stub.Get(api.GetRequest(id=ident))).integration
    return (
        got.push.state == pb.PUSH_STATE_ACTIVE
        and got.sync_state == pb.SYNC_STATE_SYNCED
        and got.next_sync_time.ToDatetime(tzinfo=UTC) - got.last_sync_time.ToDatetime(tzinfo=UTC)
        > timedelta(hours=1)
    )


async def change_delays(database_url: str, data_dir: Path, size: Size) -> list[float]:
    """Seconds from each provider change to its record in ListRecords, with push."""
    # The loop sweeps often only so that the channels open quickly; a notification wakes the
    # loop at its due time, whatever the sweep interval.
    settings = _settings(
        database_url,
        data_dir,
        push=True,
        scheduler=True,
        scheduler_sweep_interval=timedelta(seconds=0.5),
    )
    async with _running(settings, utc_now, 1) as (_, sb, stub, [ident]):
        deadline = time.monotonic() + 60
        while not await _settled(stub, ident):
            if time.monotonic() > deadline:
                raise RuntimeError("the channel did not open within a minute")
            await asyncio.sleep(0.05)
        delays = []
        for n in range(size.changes):
            summary = f"Change {n}"
            started = time.monotonic()
            _put(sb, "cal-0", "e0", summary)
            while True:
                page = await stub.ListRecords(api.ListRecordsRequest(id=ident, page_size=10))
                if any(r.id == "e0" and r.data["summary"] == summary for r in page.records):
                    break
                if time.monotonic() - started > 30:
                    raise RuntimeError(f"change {n} did not arrive within 30 s")
                await asyncio.sleep(0.01)
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.2)  # let the run end before the next change, as idle gaps do
        return delays


class _Clock:
    """A clock the simulation moves."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


async def requests_per_idle_calendar_per_day(
    database_url: str, data_dir: Path, size: Size, *, push: bool
) -> float:
    """Google requests per idle calendar per simulated day (after the calendars settled)."""
    clock = _Clock()
    settings = _settings(database_url, data_dir, push=push, scheduler=False)
    async with _running(settings, clock, size.calendars) as (app, sb, stub, idents):

        async def sweep() -> None:
            await app.scheduler.sweep()
            await app.scheduler.idle()
            await app.push.reconcile()
            await asyncio.sleep(0)  # let notifications in flight land

        for _ in range(3):  # first sync, channel, catch-up sync
            await sweep()
        if push:
            for ident in idents:
                assert await _settled(stub, ident), "a calendar did not settle"
        sb.state.log.clear()
        end = clock.now + timedelta(days=size.days)
        while clock.now < end:
            clock.now += size.step
            await sweep()
        return sb.state.log.total / size.calendars / size.days


async def figures(admin_url: str, data_dir: Path, size: Size) -> dict[str, float]:
    """Every figure of this module, each on a fresh database of the server at `admin_url`."""
    results: dict[str, float] = {}
    delays = await change_delays(await postgres.create_database(admin_url), data_dir, size)
    results["push_change_delay_p95_seconds"] = p95(delays)
    results["push_change_delay_median_seconds"] = statistics.median(delays)
    for push in (True, False):
        url = await postgres.create_database(admin_url)
        per_day = await requests_per_idle_calendar_per_day(url, data_dir, size, push=push)
        results[f"idle_calendar_requests_per_day_{'push' if push else 'polling'}"] = per_day
    return results


async def _main(size: Size) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        embedded = EmbeddedPostgres(Path(tmp) / "pg")
        admin_url = await embedded.start()
        try:
            await postgres.create_template(admin_url)
            return await figures(admin_url, Path(tmp), size)
        finally:
            await embedded.stop()


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_main(SIZES[sys.argv[1] if len(sys.argv) > 1 else "full"]))))
