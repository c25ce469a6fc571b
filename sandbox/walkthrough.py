"""`make demo`: the service and the sandbox on this machine, and the story an operator cares
about, told on the CLI's live watch.

1. A Google calendar is created and synced (`integrationsctl sync --wait`).
2. The provider breaks (the sandbox answers 503 to everything): the error appears, the
   retries fail, the safety brake goes on and only probes run.
3. The provider recovers: a probe succeeds, the integration reactivates by itself and syncs
   from its cursor.

Everything runs on 127.0.0.1 with short intervals (seconds instead of minutes); the database
is an embedded PostgreSQL in `.data/demo`. Ctrl-C stops it all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from integrations.client import IntegrationsClient
from integrations.v1 import integration_pb2 as pb

from sandbox.demo import ACCESS_TOKEN, CALENDAR_ID, seed
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox

#: The service's settings for the demo: everything happens in seconds.
SERVICE_FLAGS = (
    "--allow-private-networks", "true",
    "--min-sync-interval", "3s",
    "--scheduler-sweep-interval", "1s",
    "--breaker-threshold", "3",
    "--breaker-backoff", "1s",
    "--breaker-backoff-max", "2s",
    "--breaker-probe-interval", "3s",
    "--breaker-probe-interval-max", "3s",
    "--schedule-jitter", "0",
    "--purpose-header", "X-Sandbox-Purpose",
)  # fmt: skip


def say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


async def start_service(data_dir: Path, ops: str) -> tuple[asyncio.subprocess.Process, int]:
    """`python -m service` on a free port; returns it once it logged "ready"."""
    env = {**os.environ, "INTEGRATIONS_LOG_FORMAT": "json"}
    env.pop("DATABASE_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        str(data_dir),
        "--ops-listen",
        ops,
        *SERVICE_FLAGS,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while line := await proc.stderr.readline():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "ready":
            # The log is not part of the demo's picture, but it must keep flowing.
            _DRAINS.add(asyncio.create_task(_drain(proc.stderr)))
            return proc, int(entry["port"])
    raise SystemExit(f"the service did not start: {await proc.wait()}")


_DRAINS: set[asyncio.Task[None]] = set()


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def until(
    client: IntegrationsClient, ident: str, check: Callable[[pb.Integration], bool]
) -> pb.Integration:
    """Poll the integration until `check` holds (the demo's pacing; no deadline)."""
    while True:
        current = await client.get(ident)
        if check(current):
            return current
        await asyncio.sleep(0.5)


async def ctl(target: str, *args: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integrations.cli", "--target", target, *args
    )
    return await proc.wait()


async def walk(args: argparse.Namespace) -> None:
    async with Sandbox(port=args.sandbox_port) as sb:
        seed(sb.state)
        say(f"Sandbox provider on {sb.url}; starting the service (embedded PostgreSQL)")
        service, port = await start_service(Path(args.data_dir), args.ops_listen)
        target = f"127.0.0.1:{port}"
        watch: asyncio.subprocess.Process | None = None
        try:
            print(f"service on {target}; metrics on http://{args.ops_listen}/metrics")
            async with IntegrationsClient(target) as client:
                config = pb.ConnectorConfig(
                    google_calendar=pb.GoogleCalendarConfig(
                        calendar_id=CALENDAR_ID, api_base_url=f"{sb.url}/calendar/v3"
                    )
                )
                created = await client.create(
                    "Demo calendar",
                    "google_calendar",
                    config=config,
                    credentials=pb.Credentials(bearer_token=ACCESS_TOKEN),
                    sync_interval=timedelta(seconds=3),
                )
                ident = created.id
                say("Created and tested; now: integrationsctl sync --wait")
                await ctl(target, "sync", ident, "--wait")
                say("The live watch (integrationsctl watch --id ...) from here on")
                watch = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "integrations.cli", "--target", target,
                    "watch", "--id", ident,
                )  # fmt: skip
                await asyncio.sleep(1)
                say("The provider breaks: every request to Google answers 503")
                sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), times=None)
                await until(client, ident, lambda i: i.status == pb.STATUS_ERROR)
                await until(client, ident, lambda i: i.breaker.state == pb.BREAKER_STATE_OPEN)
                say("The safety brake is on: regular syncs stopped, only probes run")
                await ctl(target, "get", ident)
                await asyncio.sleep(args.broken_for)
                say("The provider recovers")
                sb.state.clear_faults()
                await until(
                    client,
                    ident,
                    lambda i: i.status == pb.STATUS_ACTIVE and i.last_sync_time.seconds > 0,
                )
                await asyncio.sleep(2)
                say("Reactivated by itself, synced from its cursor")
                await ctl(target, "get", ident)
                await ctl(target, "runs", ident, "--page-size", "5")
        finally:
            if watch is not None and watch.returncode is None:
                watch.terminate()
                await watch.wait()
            service.terminate()
            await service.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=".data/demo", help="the demo's database")
    parser.add_argument("--sandbox-port", type=int, default=0, help="sandbox port (0: any)")
    parser.add_argument("--ops-listen", default="127.0.0.1:9464", help="metrics address")
    parser.add_argument(
        "--broken-for", type=float, default=5, help="seconds the provider stays broken"
    )
    try:
        asyncio.run(walk(parser.parse_args(argv)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
