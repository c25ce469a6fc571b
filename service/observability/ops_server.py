"""The ops HTTP listener (`--ops-listen`): `/metrics` for Prometheus, `/healthz` (the process
is alive and its event loop answers) and `/readyz` (it should receive traffic; 503 with the
failing check otherwise). No access log: scrapes every few seconds would drown the real log."""

from __future__ import annotations

import socket
import ssl

import structlog
from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from service.oauth.callback import parse_listen
from service.observability import metrics
from service.observability.readiness import Readiness

log = structlog.get_logger(__name__)


class OpsServer:
    """Serves /metrics, /healthz and /readyz on its own address."""

    def __init__(
        self, readiness: Readiness, listen: str, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.readiness = readiness
        self.listen = listen
        self.ssl_context = ssl_context
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host, _ = parse_listen(self.listen)
        shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{shown}]" if ":" in shown else shown
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{shown}:{self.port}"

    async def start(self) -> int:
        """Bind and serve; returns the bound port."""
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        host, port = parse_listen(self.listen)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = sock.getsockname()[1]
        log.info("ops_serving", url=self.url)
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _request: web.Request) -> web.Response:
        response = web.Response(body=metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"alive": True})

    async def _readyz(self, _request: web.Request) -> web.Response:
        report = await self.readiness.check()
        return web.json_response(report.as_dict(), status=200 if report.ready else 503)
