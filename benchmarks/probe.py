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
) -> list[float]:
    """Latencies (ms) of `method` calls sent at `rate` per second until `done` is set."""
    latencies: list[float] = []
    async with grpc.aio.insecure_channel(target) as channel:

        async def one(due: float) -> None:
            await raw_call(channel, method, request)
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
    return sorted(latencies)
