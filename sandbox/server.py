"""The sandbox's HTTP server: ``create_app`` and the ``Sandbox`` context manager for tests."""

from __future__ import annotations

import socket
from types import TracebackType

from aiohttp import web
from aiohttp.log import access_logger

from sandbox import control, google, ics, oauth, rest
from sandbox.state import SandboxState
from sandbox.traffic import STATE

LOCALHOST = "127.0.0.1"


def create_app(state: SandboxState) -> web.Application:
    """An application serving every mimicked provider plus the control API over ``state``."""
    app = web.Application()
    app[STATE] = state
    for provider in (google, oauth, ics, rest):
        app.add_routes(provider.routes())
    app.add_subapp(control.PREFIX, control.create_control_app())
    return app


class Sandbox:
    """A running sandbox on a local port, for ``async with Sandbox() as sb:``.

    ``sb.url`` is the base URL (``http://127.0.0.1:PORT``) and ``sb.state`` the live state.
    Port 0 (the default) picks a free port. Leaving the block releases every parked request
    and stops the server.
    """

    def __init__(
        self,
        state: SandboxState | None = None,
        *,
        host: str = LOCALHOST,
        port: int = 0,
        access_log: bool = False,
    ) -> None:
        """Prepare (but do not start) a sandbox over ``state`` (a fresh one by default)."""
        self.state = state if state is not None else SandboxState()
        self._host = host
        self._port = port
        self._access_log = access_log
        self._runner: web.AppRunner | None = None
        self._bound: tuple[str, int] | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234`` (only while started)."""
        if self._bound is None:
            raise RuntimeError("the sandbox is not running")
        host, port = self._bound
        return f"http://{host}:{port}"

    @property
    def port(self) -> int:
        """The bound TCP port (only while started)."""
        if self._bound is None:
            raise RuntimeError("the sandbox is not running")
        return self._bound[1]

    async def start(self) -> None:
        """Bind the socket and start serving."""
        if self._runner is not None:
            raise RuntimeError("the sandbox is already running")
        # A short shutdown timeout: gates are opened on stop, so only a fault with a
        # ``delay`` can still be running, and a test should not wait for it.
        runner = web.AppRunner(
            create_app(self.state),
            access_log=access_logger if self._access_log else None,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._port))
            await web.SockSite(runner, sock).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = sock.getsockname()[:2]
        self._bound = (host, port)

    async def stop(self) -> None:
        """Release parked requests and stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self.state.gates.open_all()
        await runner.cleanup()
        await self.state.push.close()
        self._bound = None

    async def __aenter__(self) -> Sandbox:
        """Start the sandbox."""
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the sandbox."""
        await self.stop()
