"""The sandbox as a server: stopping releases parked requests, and the command line serves
demo data until SIGTERM."""

from __future__ import annotations

import asyncio
import sys

import aiohttp
import pytest

from sandbox import Fault, FaultKind, Provider, Sandbox
from tests.support.sandbox_http import RECORDS, SAFETY


async def test_stop_releases_parked_requests(http: aiohttp.ClientSession) -> None:
    sandbox = Sandbox()
    await sandbox.start()
    sandbox.state.datasets.set_dataset("things", RECORDS, id_field="uuid")
    sandbox.state.inject(Provider.REST, Fault(FaultKind.SLOW))
    url = f"{sandbox.url}/api/things"
    held = asyncio.create_task(http.get(url))
    await asyncio.wait_for(sandbox.state.gates["default"].wait_for(1), SAFETY)
    await asyncio.wait_for(sandbox.stop(), SAFETY)
    response = await asyncio.wait_for(held, SAFETY)
    assert response.status == 200
    response.release()
    with pytest.raises(RuntimeError):
        _ = sandbox.url


async def test_command_line_serves_demo_data_until_sigterm(http: aiohttp.ClientSession) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), SAFETY)).decode()
        base = banner.split()[-1]
        assert base.startswith("http://127.0.0.1:")
        headers = {"Authorization": "Bearer sandbox-token"}
        url = f"{base}/calendar/v3/calendars/primary/events"
        async with http.get(url, headers=headers) as response:
            assert response.status == 200
            assert len((await response.json())["items"]) == 4
    finally:
        process.terminate()
        assert await asyncio.wait_for(process.wait(), SAFETY) == 0
