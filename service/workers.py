"""Server processes: one (`make run`), or `--workers N` sharing one gRPC port.

A Python process serves on one core: one event loop, one GIL. `--workers N` runs N whole
service processes on one machine, the usual way to scale a Python gRPC server. Each worker
has its own database pool, scheduler loop and LISTEN connection, exactly like a replica on
another machine: claims, leases and fencing already make replicas safe beside each other.

The process started as `python -m service` becomes the supervisor. It starts the embedded
PostgreSQL if no DATABASE_URL is set, and creates the local key file, so that the workers do
not race for them. It then starts worker 0 on the configured addresses. Once worker 0 reports
the ports it bound (port 0 picks them), workers 1…N-1 bind the same ports. gRPC core and the
sign-in callback set SO_REUSEPORT, and the kernel spreads new connections over the workers.
Any worker can complete any sign-in, because sign-ins are stored in PostgreSQL. The metrics
and health endpoints (`--ops-listen`) are not shared: each worker counts its own, on the
configured port plus its index, so that Prometheus scrapes every one of them.

SIGTERM or SIGINT is forwarded to every worker. Each one drains as a lone process does, and
the supervisor exits 0 once all of them have. A worker that exits on its own (a crash, the
OOM killer) is *not* restarted: the supervisor stops the others and exits 1. A worker that
dies like that has left its process group in a state nobody checked. The platform's restart
policy (systemd, Kubernetes) has a backoff and a crash counter that operators watch. A
supervisor that restarted workers quietly would hide a crash loop. Meanwhile the dead
worker's claims and leases expire, and another replica takes its work over.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import structlog

from service import logs
from service.api.server import Server, serve
from service.app import App
from service.config import Settings
from service.oauth.callback import parse_listen
from service.observability import tracing
from service.storage.database import EmbeddedPostgres
from service.storage.sealing import KeyRing

log = structlog.get_logger("service")

#: How long the workers may take to start (an embedded database's first start included).
START_TIMEOUT = 120.0
#: Beyond the shutdown grace: closing the pool, the scheduler and the listener.
STOP_SLACK = 30.0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run the process's one event loop (uvloop where it exists) until `main` returns."""
    try:
        import uvloop

        uvloop.run(main)
    except ImportError:  # uvloop has no Windows build; the standard loop works the same
        asyncio.run(main)


#: Allocations (less deallocations) of tracked objects between two collections of the
#: youngest generation, and how many collections of one generation make one of the next.
GC_THRESHOLDS = (10_000, 20, 20)


def collect_less() -> None:
    """Tune the cyclic garbage collector for a long-lived server, once it has started.

    With Python's defaults (700, 10, 10) a busy WatchStatus fan-out spent ~11 % of the
    process's CPU in the collector: every young collection also walks the containers made
    for the change being sent. What start-up made (modules, settings, the pool) lives as
    long as the process, so it is frozen out of every later collection, and young
    collections run ~15 times less often. Reference counting still frees everything that is
    not in a cycle at once; cycles wait a little longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def serve_process(settings: Settings, on_started: Callable[[Server], None]) -> None:
    """This process serves until SIGTERM or SIGINT (see `service.api.server.serve`)."""

    async def run() -> None:
        tracing.configure()
        app = await App.start(settings)
        collect_less()
        await serve(app, on_started=on_started)

    run_loop(run())


def _worker(settings: Settings, index: int, report: Connection) -> None:
    """A worker process: the whole service, reporting its bound ports once it serves."""
    logs.configure(settings.log_format, settings.log_level, worker=index)

    def started(server: Server) -> None:
        callback = server.callback.port if server.callback is not None else 0
        # Logged before reporting, so the supervisor's "ready" line comes after every worker's.
        log.info("worker_ready", port=server.port, pid=multiprocessing.current_process().pid)
        report.send((server.port, callback))
        report.close()

    try:
        serve_process(settings, started)
    except KeyboardInterrupt:
        sys.exit(130)


class Supervisor:
    """Starts the workers, forwards the stop signal, and notices a worker that died."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context = multiprocessing.get_context("spawn")
        self.workers: list[BaseProcess] = []
        self.stopping = False
        self._wakeup_read, self._wakeup_write = socket.socketpair()

    def run(self) -> int:
        """Serve with every worker until a stop signal (0) or a worker's death (1)."""
        self._wakeup_read.setblocking(False)
        self._wakeup_write.setblocking(False)
        signal.set_wakeup_fd(self._wakeup_write.fileno())
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        embedded = None
        settings = self.settings
        if not settings.database_url:
            embedded = EmbeddedPostgres(settings.data_dir)
            settings = replace(settings, database_url=asyncio.run(embedded.start()))
        if not settings.encryption_keys:
            KeyRing.local(settings.data_dir / "encryption.keys")
        try:
            return self._serve(settings)
        finally:
            self._stop_all()
            if embedded is not None:
                asyncio.run(embedded.stop())

    def _serve(self, settings: Settings) -> int:
        grpc_port, callback_port = self._start(settings, 0)
        if grpc_port == 0:
            return 0 if self.stopping else 1
        shared = replace(
            settings,
            listen=_with_port(settings.listen, grpc_port),
            callback_listen=(
                settings.callback_listen
                if settings.callback_listen == "off"
                else _with_port(settings.callback_listen, callback_port)
            ),
        )
        for index in range(1, settings.workers):
            if self._start(replace(shared, ops_listen=_ops_of(settings, index)), index)[0] == 0:
                return 0 if self.stopping else 1
        log.info("ready", port=grpc_port, workers=settings.workers)
        while not self.stopping:
            ready = self._wait([w.sentinel for w in self.workers], None)
            for worker in self.workers:
                if worker.sentinel in ready and not self.stopping:
                    worker.join()  # it has exited (its sentinel says so): reap it, for the code
                    log.error(
                        "worker_exited", worker=self.workers.index(worker), code=worker.exitcode
                    )
                    return 1
        return 0

    def _start(self, settings: Settings, index: int) -> tuple[int, int]:
        """Start worker `index`; its (gRPC, callback) ports once it serves, (0, 0) if it
        died first or a stop signal came."""
        receive, send = self.context.Pipe(duplex=False)
        worker = self.context.Process(
            target=_worker, args=(settings, index, send), name=f"worker-{index}"
        )
        worker.start()
        send.close()
        self.workers.append(worker)
        ready = self._wait([receive, worker.sentinel], START_TIMEOUT)
        if receive in ready:
            try:
                ports: tuple[int, int] = receive.recv()
                return ports
            except EOFError:
                pass
        if not self.stopping:
            log.error("worker_not_started", worker=index, code=worker.exitcode)
        return 0, 0

    def _wait(self, objects: Sequence[Any], timeout: float | None) -> list[Any]:
        """`multiprocessing.connection.wait`, returning early (empty) on a stop signal."""
        ready = wait([*objects, self._wakeup_read], timeout)
        if self._wakeup_read in ready:
            try:
                while self._wakeup_read.recv(64):
                    pass
            except BlockingIOError:
                pass
        return [r for r in ready if r is not self._wakeup_read]

    def _on_signal(self, signum: int, _frame: object) -> None:
        if not self.stopping:
            log.info("stopping_workers", signal=signal.Signals(signum).name)
        self.stopping = True

    def _stop_all(self) -> None:
        """SIGTERM every live worker; each drains within the shutdown grace."""
        self.stopping = True
        for worker in self.workers:
            if worker.is_alive() and worker.pid is not None:
                worker.terminate()  # SIGTERM
        deadline = self.settings.shutdown_grace.total_seconds() + STOP_SLACK
        for worker in self.workers:
            worker.join(deadline)
            if worker.is_alive():
                log.warning("worker_killed", worker=self.workers.index(worker))
                worker.kill()
                worker.join()


def _ops_of(settings: Settings, index: int) -> str:
    """Worker `index`'s metrics and health address: each worker counts its own, so each has
    its own port (the configured one plus the index; port 0: a free one each) for Prometheus
    to scrape every worker."""
    if settings.ops_listen == "off":
        return "off"
    _, port = parse_listen(settings.ops_listen)
    return settings.ops_listen if port == 0 else _with_port(settings.ops_listen, port + index)


def _with_port(address: str, port: int) -> str:
    """`address` (host:port) with `port`: the port the first worker bound."""
    host, _ = parse_listen(address)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
