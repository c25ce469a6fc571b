"""CPU-heavy work runs in worker processes (service.offload): results and a provider's
failures come back whole, small work stays in this process, and a worker that dies fails only
the work it had."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from concurrent.futures.process import BrokenProcessPool
from datetime import timedelta

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
