"""CPU-heavy work — parsing a feed, decoding a big page, making a page of records storable —
away from the event loop, in worker processes.

A worker *thread* is not enough. It takes the CPU off the loop's thread, but not the GIL: while
the thread parses, each time the loop releases the GIL (every socket read and write, every
epoll) it must wait for the parser to give it back, up to `sys.getswitchinterval()` (5 ms).
An RPC crosses that point tens of times, so a 100,000-event feed parsing in a thread made Get
answer in seconds (benchmark e). A process has its own GIL: the loop keeps its pace, and the
parsing uses the machine's other core.

Work smaller than `inline_below` (bytes of input, or records) runs where it is asked, on the
loop: handing it to a process costs more than doing it. The processes start on first use,
from a forkserver (never a fork of this process: the threads and sockets of gRPC and of the
database driver do not survive one), and live as long as this process. What goes there and
back is pickled: functions at module level, and values (responses, pages, exceptions) that
pickle.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.context import BaseContext
from typing import ParamSpec, TypeVar

import structlog

from service.observability import metrics

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

#: Below this much input, work runs on the loop (a few milliseconds at most).
INLINE_BELOW = 64 * 1024
#: Modules the workers import once, when the forkserver starts.
PRELOAD = [
    "service.connectors.ics_feed",
    "service.connectors.google_calendar",
    "service.connectors.rest_json",
    "service.domain.records",
]


class Offload:
    """Runs CPU-heavy functions in `workers` processes (0: in this process, on the loop)."""

    def __init__(
        self,
        workers: int = 1,
        *,
        inline_below: int = INLINE_BELOW,
        context: BaseContext | None = None,
    ) -> None:
        self.workers = workers
        self.inline_below = inline_below
        #: How worker processes start (None: a forkserver that preloads PRELOAD).
        self._context = context
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    async def run(
        self, work: str, size: int, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`fn(*args, **kwargs)`, in a worker process when `size` (its input's bytes or
        records) is at least `inline_below`. Exceptions come back as raised. `work` names it
        in metrics and logs."""
        if self.workers < 1 or size < self.inline_below:
            return fn(*args, **kwargs)
        loop = asyncio.get_running_loop()
        metrics.OFFLOADED.labels(work).inc()
        metrics.OFFLOAD_IN_FLIGHT.inc()
        pool = self._executor()
        try:
            # Submitting starts a worker process when none is idle and the pool is not full,
            # and waits until that process exists: off the loop, in a thread.
            submitting = loop.run_in_executor(
                None, pool.submit, functools.partial(fn, *args, **kwargs)
            )
            try:
                future: Future[T] = await asyncio.shield(submitting)
            except asyncio.CancelledError:
                submitting.add_done_callback(_cancel_submitted)
                raise
            return await asyncio.wrap_future(future)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): this work fails (the caller's attempt
            # is retried like any failure), and the next gets new workers.
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            log.error("offload_worker_died", work=work)
            raise
        finally:
            metrics.OFFLOAD_IN_FLIGHT.dec()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                context = self._context
                if context is None:
                    forkserver = multiprocessing.get_context("forkserver")
                    forkserver.set_forkserver_preload(PRELOAD)
                    context = forkserver
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context)
            return self._pool

    def close(self) -> None:
        """Stop the workers (work in flight is finished first)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _cancel_submitted(submitting: asyncio.Future[Future[T]]) -> None:
    """Work whose caller went away while it was being handed over: not to run after all."""
    if not submitting.cancelled() and submitting.exception() is None:
        submitting.result().cancel()


#: Everything in this process, on the loop: for tools and tests that build sources by hand.
INLINE = Offload(0)

_shared: dict[int, Offload] = {}


def shared(workers: int) -> Offload:
    """The process's offload with `workers` processes: one pool per process, whatever the
    number of apps in it (tests build many), stopped when the process exits."""
    found = _shared.get(workers)
    if found is None:
        found = _shared[workers] = Offload(workers)
        atexit.register(found.close)
    return found
