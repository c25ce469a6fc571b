"""A steady latency probe: one Get every few milliseconds, each timed from the moment it was
due to its answer, however long that takes. Unlike a load generator it sends a trickle (a
Python client keeps up easily), so a stalled event loop shows as the time it stalled, not
as requests that were never sent."""

from __future__ import annotations

import asyncio
import time

import grpc

from benchmarks.bench import raw_call


async def probe(
    target: str, method: str, request: bytes, rate: float, done: asyncio.Event
) -> tuple[list[float], list[str]]:
    """Latencies (ms, sorted) of `method` calls sent at `rate` per second until `done` is
    set, answered or failed; and the status codes of those that failed."""
    latencies: list[float] = []
    failures: list[str] = []
    async with grpc.aio.insecure_channel(target) as channel:

        async def one(due: float) -> None:
            try:
                await raw_call(channel, method, request)
            except grpc.aio.AioRpcError as exc:
                # gRPC core cancels calls that wait too long to be taken by a stalled loop:
                # such a call still waited, and it failed.
                failures.append(exc.code().name)
            latencies.append(1000 * (time.monotonic() - due))

        calls: list[asyncio.Task[None]] = []
        begun = time.monotonic()
        n = 0
        while not done.is_set():
            due = begun + n / rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # the probe's pace, not a synchronisation
            calls.append(asyncio.create_task(one(due)))
            n += 1
        await asyncio.gather(*calls)
    return sorted(latencies), failures
