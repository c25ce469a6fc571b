"""WatchStatus subscribers in a process of their own (so they do not share a core with the
bench): `python -m benchmarks.watchers TARGET STREAMS EXPECTED DRAIN`.

Opens STREAMS WatchStatus streams (about a hundred per connection) and prints `subscribed N`
once every stream has its snapshot (or once N of them had, 30 s on). Then it takes every
change: its latency is the receipt time minus the commit time the message carries
(`event.occur_time`, the same machine's clock). Each stream stops after EXPECTED changes;
DRAIN seconds after the bench says (a line on stdin) it made them all, the rest give up. The
last line is a JSON summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from array import array
from collections import Counter
from typing import TYPE_CHECKING

os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc
import uvloop
from integrations.v1 import service_pb2 as api
from integrations.v1 import service_pb2_grpc

from benchmarks.stats import percentile

if TYPE_CHECKING:
    from integrations.v1.service_pb2_grpc import IntegrationServiceAsyncStub

STREAMS_PER_CONNECTION = 100
#: How long all the streams may take to get their snapshots.
SUBSCRIBE_TIMEOUT = 30.0


class Watchers:
    """Every stream's progress, and every latency seen."""

    def __init__(self, target: str, streams: int, expected: int) -> None:
        self.target = target
        self.streams = streams
        self.expected = expected
        self.latencies = array("d")
        self.complete = 0
        self.errors: Counter[str] = Counter()
        self.subscribed = 0
        self.all_subscribed = asyncio.Event()

    async def watch(self, stub: IntegrationServiceAsyncStub) -> None:
        seen = 0
        call = stub.WatchStatus(api.WatchStatusRequest())
        try:
            async for message in call:
                kind = message.WhichOneof("kind")
                if kind == "snapshot_complete":
                    self.subscribed += 1
                    if self.subscribed == self.streams:
                        self.all_subscribed.set()
                elif kind == "change":
                    stamp = message.event.occur_time
                    self.latencies.append(time.time() - stamp.seconds - stamp.nanos / 1e9)
                    seen += 1
                    if seen == self.expected:
                        self.complete += 1
                        call.cancel()
                        return
        except grpc.aio.AioRpcError as exc:  # e.g. CANCELLED by gRPC core in a burst
            self.errors[exc.code().name] += 1
        except asyncio.CancelledError:
            self.errors["DEADLINE"] += 1
            raise


async def main(target: str, streams: int, expected: int, drain: float) -> None:
    watchers = Watchers(target, streams, expected)
    connections = max(1, -(-streams // STREAMS_PER_CONNECTION))
    channels = [
        grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    stubs = [service_pb2_grpc.IntegrationServiceStub(c) for c in channels]
    tasks = [asyncio.create_task(watchers.watch(stubs[n % connections])) for n in range(streams)]
    # Subscribing stalls past some number of streams (see docs/SCALING.md): after a while,
    # go on with the streams that did subscribe, and say how many.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watchers.all_subscribed.wait(), timeout=SUBSCRIBE_TIMEOUT)
    print(f"subscribed {watchers.subscribed}", flush=True)
    # The bench writes a line once it has made every change; from then on the streams have
    # `drain` seconds to receive the last of them.
    produced = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
    everything = asyncio.ensure_future(asyncio.wait(tasks))
    await asyncio.wait({produced, everything}, return_when=asyncio.FIRST_COMPLETED)
    if not everything.done():
        await asyncio.wait({everything}, timeout=drain)
    pending = [t for t in tasks if not t.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    ordered = sorted(watchers.latencies)
    summary = {
        "received": len(ordered),
        "complete": watchers.complete,
        "subscribed": watchers.subscribed,
        "p50_ms": 1000 * percentile(ordered, 50),
        "p99_ms": 1000 * percentile(ordered, 99),
        "max_ms": 1000 * ordered[-1] if ordered else float("nan"),
        "errors": dict(watchers.errors),
    }
    print(json.dumps(summary), flush=True)
    for channel in channels:
        await channel.close()
    await produced  # the bench always writes its line


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
