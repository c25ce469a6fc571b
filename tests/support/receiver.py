"""A webhook receiver as a consumer would run one: a real HTTP server on 127.0.0.1 that
verifies every request with the `standardwebhooks` package (an implementation independent of
the service's), keeps what it received, and can be stopped, held or made to fail."""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook


@dataclass(frozen=True)
class Received:
    """One verified webhook."""

    id: str
    type: str
    data: dict[str, Any]
    signatures: int


class Receiver:
    """`async with Receiver() as r:`; `r.url` takes webhooks, verified with `secret`."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        #: Verified webhooks it accepted (answered 2xx), in arrival order (a redelivery appears
        #: again).
        self.received: list[Received] = []
        #: Requests whose signature did not verify (with why).
        self.rejected: list[str] = []
        #: The status to answer with.
        self.status = 200
        #: Statuses for the next requests, taken in arrival order (then `status`).
        self.answers: list[int] = []
        #: While set, requests are held until it is cleared (see `hold`).
        self.holding: asyncio.Event | None = None
        #: Set whenever a request arrives (replaced after each).
        self.arrived = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Serve (again on the same port once it has had one)."""
        app = web.Application()
        app.router.add_post("/hooks", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Stop serving: connections are refused until `start` (the receiver is down)."""
        if self.holding is not None:
            self.holding.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def hold(self) -> asyncio.Event:
        """Hold requests (unanswered) until the returned event is set."""
        self.holding = asyncio.Event()
        return self.holding

    async def wait_for(self, count: int, timeout: float = 20) -> list[Received]:
        """Wait until `count` webhooks were received (verified); returns them all."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self._changed = asyncio.Event()
                await self._changed.wait()
        return self.received

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.type == kind]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        answer = self.answers.pop(0) if self.answers else None
        arrived, self.arrived = self.arrived, asyncio.Event()
        arrived.set()
        if self.holding is not None and not self.holding.is_set():
            await self.holding.wait()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = None
        for secret in self.secrets:
            try:
                verified = Webhook(secret).verify(body, headers)
                break
            except Exception as exc:  # the library's own error types
                self.rejected.append(f"{type(exc).__name__}: {exc}")
        status = answer if answer is not None else self.status
        if verified is not None and 200 <= status < 300:
            signatures = len(headers.get("webhook-signature", "").split(" "))
            payload = json.loads(body)
            self.received.append(
                Received(headers["webhook-id"], payload["type"], payload["data"], signatures)
            )
            self._changed.set()
        return web.Response(status=status if verified is not None else 401)
