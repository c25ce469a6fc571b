"""The gRPC server: the IntegrationService, health, reflection, TLS, the HTTP listeners beside
it (the OAuth callback, the ops endpoints), and a graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from integrations.v1 import service_pb2, service_pb2_grpc

from service import tls
from service.api import reflection
from service.api.interceptor import RpcInterceptor
from service.api.servicer import IntegrationServicer
from service.app import App
from service.background import cancel_and_wait
from service.config import Settings
from service.oauth.callback import CallbackServer
from service.observability import tracing
from service.observability.ops_server import OpsServer
from service.observability.readiness import Readiness

log = structlog.get_logger(__name__)

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["IntegrationService"].full_name
_SERVING, _NOT_SERVING = (
    health_pb2.HealthCheckResponse.SERVING,
    health_pb2.HealthCheckResponse.NOT_SERVING,
)


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    """gRPC core settings of the server.

    Core keeps the calls that arrived but were not yet taken by the application in a queue,
    and past `grpc.server.max_pending_requests` (default 1000) starts cancelling new ones at
    random — CANCELLED before any handler (or log line) sees them — until the hard limit
    (default 3000) refuses them all. The asyncio server takes calls one at a time from the
    event loop, so a burst of a few thousand WatchStatus subscribers (which never finish) hit
    that. The queue is made long enough for every stream this process serves plus a burst
    of unary calls; past the stream limit, WatchStatus answers RESOURCE_EXHAUSTED itself.
    """
    pending = settings.watch_max_streams + PENDING_HEADROOM
    return [
        ("grpc.server.max_pending_requests", pending),
        ("grpc.server.max_pending_requests_hard_limit", pending),
        # Core turns SO_REUSEPORT on by default, which lets a second server start on a port
        # already in use without a word. Only the processes of one `--workers` replica share
        # their port on purpose; a lone server gets "address in use" like any other.
        ("grpc.so_reuseport", int(settings.workers > 1)),
    ]


#: Calls beyond the WatchStatus limit that may wait to be taken by the application.
PENDING_HEADROOM = 5000


class Server:
    """A started gRPC server bound to the app."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        self.grpc = grpc.aio.server(
            interceptors=[*tracing.server_interceptors(), RpcInterceptor()],
            options=grpc_options(settings),
        )
        self.health = health.aio.HealthServicer()
        service_pb2_grpc.add_IntegrationServiceServicer_to_server(
            IntegrationServicer(app), self.grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable(self.grpc, (SERVICE_NAME, health.SERVICE_NAME))
        self.port = 0
        #: The server's certificates (None: plaintext), reloaded on SIGHUP and file changes.
        self.certificates = tls.from_settings(
            settings.tls_cert, settings.tls_key, settings.tls_client_ca
        )
        http_tls = (
            self.certificates.ssl_context()
            if self.certificates is not None and settings.http_tls
            else None
        )
        #: The OAuth sign-in callback (HTTP), served beside the gRPC server unless "off".
        self.callback = (
            None
            if settings.callback_listen == "off"
            else CallbackServer(
                app.reauthorization,
                settings.callback_listen,
                settings.public_url,
                http_tls,
                app.notifications,
                reuse_port=settings.workers > 1,
            )
        )
        self.readiness = Readiness(app.db, app.watch.listener)
        #: /metrics, /healthz and /readyz, unless "off".
        self.ops = (
            None
            if settings.ops_listen == "off"
            else OpsServer(self.readiness, settings.ops_listen, http_tls)
        )
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, address: str) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        if self.certificates is not None:
            self.port = self.grpc.add_secure_port(address, self.certificates.grpc_credentials())
        else:
            self.port = self.grpc.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        if self.callback is not None:
            await self.callback.start()
        if self.ops is not None:
            await self.ops.start()
        await self.grpc.start()
        ready = (await self.readiness.check()).ready
        await self._set_health(ready)
        interval = self.app.settings.readiness_interval.total_seconds()
        self._tasks.append(
            asyncio.create_task(self.readiness.follow(interval, self._health_follows))
        )
        if self.certificates is not None:
            check = self.app.settings.tls_reload_interval.total_seconds()
            self._tasks.append(asyncio.create_task(self.certificates.watch(check)))
        log.info(
            "serving",
            address=address,
            port=self.port,
            tls="mutual"
            if self.certificates and self.certificates.mutual
            else "on"
            if self.certificates
            else "off",
        )
        return self.port

    def reload_certificates(self) -> bool:
        """Re-read the TLS files now (SIGHUP); False when TLS is off or the files are bad."""
        return self.certificates is not None and self.certificates.reload()

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING so balancers drain us, let in-flight RPCs finish within the
        grace period, then cancel what is left."""
        self.readiness.drain()
        await self.health.enter_graceful_shutdown()
        for task in self._tasks:
            await cancel_and_wait(task)
        self._tasks.clear()
        if self.callback is not None:
            await self.callback.stop()
        # Watch streams never finish by themselves: end them now with UNAVAILABLE so their
        # clients resume on another replica instead of being cancelled after the grace.
        self.app.watch.end_streams()
        await self.grpc.stop(grace)
        if self.ops is not None:
            await self.ops.stop()
        log.info("stopped")

    def _health_follows(self, ready: bool) -> None:
        task = asyncio.create_task(self._set_health(ready))
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _set_health(self, ready: bool) -> None:
        for name in ("", SERVICE_NAME):
            await self.health.set(name, _SERVING if ready else _NOT_SERVING)


async def serve(app: App, *, on_started: Callable[[Server], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain and close the app. SIGHUP reloads the TLS
    certificates. `on_started` sees the started server (its bound ports)."""
    server = Server(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, server.reload_certificates)
    if app.settings.keys_in_clear_text:
        log.warning(
            "insecure_plaintext",
            message=(
                "API KEYS TRAVEL IN CLEAR TEXT: gRPC on a non-loopback address without TLS "
                "(--insecure-plaintext). Only acceptable behind a TLS-terminating proxy on "
                "this host."
            ),
            listen=app.settings.listen,
        )
    try:
        await server.start(app.settings.listen)
        if on_started is not None:
            on_started(server)
        await stop.wait()
        log.info("shutting_down", grace_seconds=app.settings.shutdown_grace.total_seconds())
        await server.stop(app.settings.shutdown_grace.total_seconds())
    finally:
        await app.close()
