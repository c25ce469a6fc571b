"""The gRPC server: the IntegrationService, health, reflection, and a graceful stop."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from integrations.v1 import service_pb2, service_pb2_grpc

from service.api.interceptor import RpcInterceptor
from service.api.servicer import IntegrationServicer
from service.app import App
from service.oauth.callback import CallbackServer

log = structlog.get_logger(__name__)

SERVICE_NAME = service_pb2.DESCRIPTOR.services_by_name["IntegrationService"].full_name


class Server:
    """A started gRPC server bound to the app."""

    def __init__(self, app: App) -> None:
        self.app = app
        settings = app.settings
        # gRPC core turns SO_REUSEPORT on by default, which lets a second server start on a
        # port already in use without a word. Only the processes of one `--workers` replica
        # share their port on purpose; a lone server gets "address in use" like any other.
        shared = settings.workers > 1
        self.grpc = grpc.aio.server(
            interceptors=[RpcInterceptor()], options=[("grpc.so_reuseport", int(shared))]
        )
        self.health = health.aio.HealthServicer()
        service_pb2_grpc.add_IntegrationServiceServicer_to_server(
            IntegrationServicer(app), self.grpc
        )
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.grpc
        )
        self.port = 0
        #: The OAuth sign-in callback (HTTP), served beside the gRPC server unless "off".
        self.callback = (
            None
            if settings.callback_listen == "off"
            else CallbackServer(
                app.reauthorization,
                settings.callback_listen,
                settings.public_url,
                reuse_port=shared,
            )
        )

    async def start(self, address: str) -> int:
        """Bind and start; returns the bound port (useful with port 0)."""
        self.port = self.grpc.add_insecure_port(address)
        if self.port == 0:
            raise OSError(f"cannot listen on {address}")
        if self.callback is not None:
            await self.callback.start()
        await self.grpc.start()
        for name in ("", SERVICE_NAME):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", address=address, port=self.port)
        return self.port

    async def stop(self, grace: float) -> None:
        """Report NOT_SERVING so balancers drain us, let in-flight RPCs finish within the
        grace period, then cancel what is left."""
        await self.health.enter_graceful_shutdown()
        if self.callback is not None:
            await self.callback.stop()
        # Watch streams never finish by themselves: end them now with UNAVAILABLE so their
        # clients resume on another replica instead of being cancelled after the grace.
        self.app.watch.end_streams()
        await self.grpc.stop(grace)
        log.info("stopped")


async def serve(app: App, *, on_started: Callable[[Server], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then drain and close the app. `on_started` sees the
    started server (its bound ports)."""
    server = Server(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start(app.settings.listen)
        if on_started is not None:
            on_started(server)
        await stop.wait()
        log.info("shutting_down", grace_seconds=app.settings.shutdown_grace.total_seconds())
        await server.stop(app.settings.shutdown_grace.total_seconds())
    finally:
        await app.close()
