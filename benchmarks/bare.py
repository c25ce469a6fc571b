"""The baseline server: a bare grpc.aio server with no service code behind it.

It answers unary methods with pre-encoded bytes, and streams pre-built messages to every open
stream of a streaming method when told to (`/bench.Bare/Broadcast` with the message's bytes).
It runs on the same loop as the service (uvloop), in a process of its own, so the gap
between it and the service is what the service's own code costs.

`python -m benchmarks.bare SPEC.json` prints `port N` once it serves. SPEC: {"unary":
{method: base64 response}, "stream": {"method": name, "prelude": [base64 message, …]}}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import uvloop

BROADCAST = "/bench.Bare/Broadcast"


class Bare(grpc.GenericRpcHandler):
    """Method name -> a handler over raw bytes (no (de)serialization at all)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.unary = {m: base64.b64decode(b) for m, b in spec.get("unary", {}).items()}
        stream = spec.get("stream") or {}
        self.stream_method: str | None = stream.get("method")
        self.prelude = [base64.b64decode(b) for b in stream.get("prelude", [])]
        self.subscribers: set[asyncio.Queue[bytes]] = set()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = details.method
        if method in self.unary:
            return grpc.unary_unary_rpc_method_handler(self._answer(self.unary[method]))
        if method == BROADCAST:
            return grpc.unary_unary_rpc_method_handler(self._broadcast)
        if method == self.stream_method:
            return grpc.unary_stream_rpc_method_handler(self._stream)
        return None

    @staticmethod
    def _answer(
        reply: bytes,
    ) -> Callable[[bytes, grpc.aio.ServicerContext[Any, Any]], Awaitable[bytes]]:
        async def answer(_request: bytes, _context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            return reply

        return answer

    async def _broadcast(
        self, message: bytes, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        for queue in self.subscribers:
            queue.put_nowait(message)
        return b""

    async def _stream(
        self, _request: bytes, _context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.subscribers.add(queue)
        try:
            for message in self.prelude:
                yield message
            while True:
                yield await queue.get()
        finally:
            self.subscribers.discard(queue)


async def serve(spec: dict[str, Any]) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((Bare(spec),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"port {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        uvloop.run(serve(json.load(f)))
