"""CPU-heavy work runs in worker processes (service.offload): results and a provider's
failures come back whole, small work stays in this process, and a worker that dies fails only
the work it had."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta
from multiprocessing.context import ForkServerContext, ForkServerProcess

import pytest

from service.connectors.provider_failures import ProviderFailure
from service.domain.taxonomy import ErrorCode
from service.offload import Offload


@pytest.fixture
async def offload() -> AsyncIterator[Offload]:
    pool = Offload(1, inline_below=1024)
    yield pool
    pool.close()


def _refuse(message: str) -> None:
    raise ProviderFailure(
        ErrorCode.RATE_LIMITED,
        message,
        retry_after=timedelta(seconds=30),
        context={"url": "https://calendar.example.com/x"},
    )


async def test_big_work_runs_in_another_process_and_small_work_here(offload: Offload) -> None:
    assert await offload.run("pid", 1024, os.getpid) != os.getpid()
    assert await offload.run("pid", 1023, os.getpid) == os.getpid()


async def test_a_providers_failure_comes_back_as_it_was_raised(offload: Offload) -> None:
    with pytest.raises(ProviderFailure) as raised:
        await offload.run("refuse", 4096, _refuse, "slow down")
    failure = raised.value
    assert (failure.code, failure.message) == (ErrorCode.RATE_LIMITED, "slow down")
    assert failure.retry_after == timedelta(seconds=30)
    assert failure.context == {"url": "https://calendar.example.com/x"}


async def test_a_worker_that_dies_fails_its_work_and_the_next_work_gets_a_new_one(
    offload: Offload,
) -> None:
    worker = await offload.run("pid", 4096, os.getpid)
    with pytest.raises(BrokenProcessPool):
        await offload.run("kill", 4096, os.kill, worker, signal.SIGKILL)
    replacement = await offload.run("pid", 4096, os.getpid)
    assert replacement not in (worker, os.getpid())


#: The threads worker processes were started from, by `_Recording`.
_STARTED_FROM: list[str] = []


class _RecordingProcess(ForkServerProcess):
    def start(self) -> None:
        _STARTED_FROM.append(threading.current_thread().name)
        super().start()


class _Recording(ForkServerContext):
    """A forkserver context that notes which thread starts each worker process."""

    Process = _RecordingProcess


async def test_a_worker_process_starts_off_the_event_loop() -> None:
    # Starting a worker waits until the process exists (the first one waits for the
    # forkserver too): done on the loop, that held every RPC of the process for ~0.5 s.
    _STARTED_FROM.clear()
    pool = Offload(2, inline_below=1, context=_Recording())
    try:
        pids = {await pool.run("pid", 1, os.getpid) for _ in range(3)}
    finally:
        pool.close()
    assert os.getpid() not in pids
    assert _STARTED_FROM, "the pool started no process"
    assert threading.current_thread().name not in _STARTED_FROM
