"""The HTTP endpoint providers send browsers back to: `GET /oauth/callback?code&state` (or
`?error&state`). It runs in the service process beside the gRPC server, on its own address,
and any replica can complete any sign-in (they are kept in PostgreSQL).

Beside it, `POST /push/<tenant>` receives providers' push notifications (see
`service.engine.notifications`): answered at once, 200 whatever became of it, 503 when the
database cannot take it now (the provider retries).

A completed sign-in redirects to the return URL its Reauthorize gave (with `integration_id`
and `status` added), or shows a small page; anything else shows a page saying what happened
and what to do. Query strings carry the code and the state, so nothing here logs them
(aiohttp's access log is off) and the pages keep them out of Referer headers.
"""

from __future__ import annotations

import socket
import ssl

import structlog
from aiohttp import web
from yarl import URL

from service.domain.exceptions import Unavailable
from service.engine.notifications import Notifications
from service.engine.providers import support_reference
from service.engine.push import NOTIFICATION_PATH
from service.oauth import pages
from service.oauth.reauthorization import Reauthorization, SignInResult
from service.storage.errors import LockTimeout

log = structlog.get_logger(__name__)

PATH = "/oauth/callback"


def parse_listen(address: str) -> tuple[str, int]:
    """host:port (IPv6 as [::1]:8080) as a (host, port) pair."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"not a host:port address: {address!r}")
    return host.strip("[]"), int(port)


class CallbackServer:
    """Serves the callback while the gRPC server serves."""

    def __init__(
        self,
        reauthorization: Reauthorization,
        listen: str,
        public_url: str,
        ssl_context: ssl.SSLContext | None = None,
        notifications: Notifications | None = None,
        *,
        reuse_port: bool = False,
    ) -> None:
        self.reauthorization = reauthorization
        #: Serve HTTPS with this context (None: plain HTTP).
        self.ssl_context = ssl_context
        self.notifications = notifications
        self.listen = listen
        #: Share the port with the other server processes of this replica (`--workers`).
        self.reuse_port = reuse_port
        #: The base URL browsers reach this endpoint at; empty: derived from the bound address.
        self.public_url = public_url.rstrip("/")
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The callback's public URL (the sign-ins' redirect URI)."""
        if self.public_url:
            return self.public_url + PATH
        host, _ = parse_listen(self.listen)
        # A wildcard address is not one a browser can go to; this machine's loopback is.
        shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        shown = f"[{shown}]" if ":" in shown else shown
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{shown}:{self.port}{PATH}"

    async def start(self) -> str:
        """Bind and serve; returns the callback's public URL."""
        app = web.Application()
        app.router.add_get(PATH, self._callback)
        if self.notifications is not None:
            app.router.add_post(NOTIFICATION_PATH + "{tenant}", self._notification)
        # No access log: callback URLs carry authorization codes and states.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        host, port = parse_listen(self.listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            await web.SockSite(runner, sock, ssl_context=self.ssl_context).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = sock.getsockname()[1]
        self.reauthorization.callback_url = self.url
        log.info("sign_in_callback_serving", address=f"{host}:{self.port}", url=self.url)
        return self.url

    async def stop(self) -> None:
        """Stop accepting sign-ins here, then let the callbacks in progress finish."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.reauthorization.callback_url = None
        await runner.cleanup()

    async def _callback(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        try:
            result = await self.reauthorization.complete_sign_in(
                query.get("state", ""), query.get("code", ""), query.get("error", "")
            )
        except Exception as exc:  # a page with a reference, never a traceback
            reference = support_reference()
            log.error("sign_in_callback_crashed", support_reference=reference, exc_info=exc)
            return pages.page(
                "Something went wrong",
                "The sign-in could not be completed because of a problem in our "
                f"service. Raise a ticket quoting the reference {reference}.",
                status=500,
            )
        return _answer(result)

    async def _notification(self, request: web.Request) -> web.Response:
        assert self.notifications is not None
        try:
            await self.notifications.receive(request.match_info["tenant"], request.headers)
        except (Unavailable, LockTimeout):
            # The provider retries 5xx with backoff: the notification is not lost.
            return web.Response(status=503)
        except Exception:
            log.error("push_notification_crashed", exc_info=True)
            return web.Response(status=500)
        return web.Response(status=200)


def _answer(result: SignInResult) -> web.Response:
    if result.ok and result.return_url:
        params = {}
        if result.integration is not None:
            params = {
                "integration_id": str(result.integration.id),
                "status": result.integration.status.value,
            }
        return pages.redirect(str(URL(result.return_url).update_query(params)))
    return pages.page(
        result.title, result.detail, status=200 if result.ok else 400, link=result.return_url
    )
