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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from integrations.client import IntegrationsClient
from integrations.v1 import integration_pb2 as pb

from sandbox.demo import ACCESS_TOKEN, CALENDAR_ID, seed
from sandbox.faults import Fault, FaultKind, Provider
from sandbox.server import Sandbox

#: The service's settings for the demo: everything happens in seconds.
SERVICE_FLAGS = (
    "--allow-unauthenticated", "true",
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


class DemoFailed(Exception):
    """A step of the walkthrough did not happen in time, or a command failed: says which."""


class ServiceLog:
    """The service's stderr. Not part of the demo's picture, but it must keep flowing, and its
    last lines are what a failed demo shows."""

    def __init__(self, keep: int = 40) -> None:
        self.lines: deque[str] = deque(maxlen=keep)
        self._drain: asyncio.Task[None] | None = None

    async def line(self, stream: asyncio.StreamReader) -> dict[str, object] | None:
        """The next JSON line ({} for any other text); None once the service closed it."""
        raw = await stream.readline()
        if not raw:
            return None
        text = raw.decode(errors="replace").rstrip()
        self.lines.append(text)
        try:
            entry = json.loads(text)
        except ValueError:
            return {}
        return entry if isinstance(entry, dict) else {}

    def drain(self, stream: asyncio.StreamReader) -> None:
        async def rest() -> None:
            while await self.line(stream) is not None:
                pass

        self._drain = asyncio.create_task(rest())

    async def closed(self) -> None:
        """Wait for the last line (once the service exited)."""
        if self._drain is not None:
            await self._drain

    def tail(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Service:
    """The started service: its process, gRPC port and metrics URL (None with no ops port)."""

    proc: asyncio.subprocess.Process
    port: int
    metrics_url: str | None


async def start_service(data_dir: Path, ops: str, log: ServiceLog, timeout: float) -> Service:
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
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    metrics_url: str | None = None
    try:
        async with asyncio.timeout(timeout):
            while (entry := await log.line(proc.stderr)) is not None:
                if entry.get("event") == "ops_serving":
                    metrics_url = f"{entry['url']}/metrics"
                if entry.get("event") == "ready":
                    log.drain(proc.stderr)
                    return Service(proc, int(str(entry["port"])), metrics_url)
    except TimeoutError:
        proc.terminate()
        await proc.wait()
        raise DemoFailed(f"the service was not ready within {timeout:.0f}s") from None
    raise DemoFailed(f"the service did not start (exit code {await proc.wait()})")


async def until(
    client: IntegrationsClient,
    ident: str,
    what: str,
    check: Callable[[pb.Integration], bool],
    timeout: float,
) -> pb.Integration:
    """Poll the integration until `check` holds (the demo's pacing); DemoFailed after
    `timeout` seconds, naming what did not happen and where the integration stands."""
    current = await client.get(ident)
    try:
        async with asyncio.timeout(timeout):
            while not check(current):
                await asyncio.sleep(0.5)
                current = await client.get(ident)
    except TimeoutError:
        status = pb.Status.Name(current.status)
        brake = pb.BreakerState.Name(current.breaker.state)
        raise DemoFailed(
            f"{what} did not happen within {timeout:.0f}s (the integration is {status}, "
            f"breaker {brake}, last error: {current.last_error.message or 'none'})"
        ) from None
    return current


async def ctl(target: str, *args: str) -> None:
    """Run `integrationsctl`, as a person would, its output on this terminal."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "integrations.cli", "--target", target, *args
    )
    if code := await proc.wait():
        raise DemoFailed(f"integrationsctl {' '.join(args)} exited with {code}")


async def walk(args: argparse.Namespace) -> None:
    """The walkthrough; on a failure, says what failed and shows the service's last lines."""
    log = ServiceLog()
    try:
        await _walk(args, log)
    except DemoFailed as exc:
        print(f"\nthe demo failed: {exc}", file=sys.stderr)
        print(f"the service's last log lines:\n{log.tail()}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


async def _walk(args: argparse.Namespace, log: ServiceLog) -> None:
    timeout = args.timeout
    async with Sandbox(port=args.sandbox_port) as sb:
        seed(sb.state)
        say(f"Sandbox provider on {sb.url}; starting the service (embedded PostgreSQL)")
        service = await start_service(Path(args.data_dir), args.ops_listen, log, timeout)
        target = f"127.0.0.1:{service.port}"
        watch: asyncio.subprocess.Process | None = None
        try:
            print(f"service on {target}; metrics on {service.metrics_url or 'off'}")
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
                await until(
                    client, ident, "the error", lambda i: i.status == pb.STATUS_ERROR, timeout
                )
                await until(
                    client,
                    ident,
                    "the safety brake",
                    lambda i: i.breaker.state == pb.BREAKER_STATE_OPEN,
                    timeout,
                )
                say("The safety brake is on: regular syncs stopped, only probes run")
                await ctl(target, "get", ident)
                await asyncio.sleep(args.broken_for)
                say("The provider recovers")
                sb.state.clear_faults()
                await until(
                    client,
                    ident,
                    "the reactivation",
                    lambda i: i.status == pb.STATUS_ACTIVE and i.last_sync_time.seconds > 0,
                    timeout,
                )
                await asyncio.sleep(2)
                say("Reactivated by itself, synced from its cursor")
                await ctl(target, "get", ident)
                await ctl(target, "runs", ident, "--page-size", "5")
        finally:
            if watch is not None and watch.returncode is None:
                watch.terminate()
                await watch.wait()
            if service.proc.returncode is None:
                service.proc.terminate()
            await service.proc.wait()
            await log.closed()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=".data/demo", help="the demo's database")
    parser.add_argument("--sandbox-port", type=int, default=0, help="sandbox port (0: any)")
    parser.add_argument("--ops-listen", default="127.0.0.1:9464", help="metrics address")
    parser.add_argument(
        "--broken-for", type=float, default=5, help="seconds the provider stays broken"
    )
    parser.add_argument(
        "--timeout", type=float, default=60, help="seconds any one step may take before failing"
    )
    try:
        asyncio.run(walk(parser.parse_args(argv)))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
