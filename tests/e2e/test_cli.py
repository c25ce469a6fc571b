"""`integrationsctl` against a running service, as an operator types it."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox import Sandbox
from sandbox.faults import Fault, FaultKind, Provider
from service.api.server import Server
from tests.support.rpc import Stub
from tests.support.syncing import SANDBOX_DEPLOYMENT, bearer, create, google, seed_calendar

pytestmark = pytest.mark.settings(**SANDBOX_DEPLOYMENT)


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sandbox:
        seed_calendar(sandbox.state, events=3)
        yield sandbox


@pytest.fixture
async def calendar(stub: Stub, sb: Sandbox) -> str:
    return (await create(stub, "google_calendar", google(sb), bearer())).id


async def ctl(server: Server, *args: str, columns: int = 80) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "integrations.cli",
        "--target",
        f"127.0.0.1:{server.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": str(columns), "PATH": "/usr/bin:/bin"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_create_list_pause_and_history(server: Server) -> None:
    code, out, _ = await ctl(
        server,
        "--json",
        "create",
        "Team calendar",
        "rest_json",
        "--config",
        '{"rest_json": {"url": "https://api.example.com/items"}}',
        "--breaker-threshold",
        "3",
    )
    assert code == 0
    created = json.loads(out)
    assert created["breaker"]["threshold"] == 3
    assert created["status"] == "STATUS_CONFIGURE"
    assert created["missingConfigFields"] == ["id_field"]
    code, out, _ = await ctl(server, "--json", "list")
    assert [i["id"] for i in json.loads(out)] == [created["id"]]
    code, out, _ = await ctl(server, "list", "--status", "configure")
    assert "Team calendar" in out and "configure" in out and created["id"] in out
    code, out, _ = await ctl(server, "list", "--status", "active")
    assert "Team calendar" not in out
    code, out, _ = await ctl(server, "events", created["id"])
    assert "configure_incomplete" in out and "create" in out


async def test_errors_show_reason_and_violations(server: Server) -> None:
    code, _, err = await ctl(server, "create", "", "fax")
    assert code == 1
    assert "INVALID_ARGUMENT" in err
    assert "display_name: must not be empty" in err
    assert "connector_type: unknown connector" in err
    assert "solution: fix the fields above" in err
    code, _, err = await ctl(server, "pause", "5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11")
    assert code == 3 and "NOT_FOUND" in err and "INTEGRATION_NOT_FOUND" in err
    assert "solution: check the id" in err
    code, _, err = await ctl(server, "create", "x", "ics_feed", "--config", "{nope")
    assert code == 2 and "--config is not valid JSON" in err


async def test_watch_follows_changes(server: Server) -> None:
    code, out, _ = await ctl(server, "--json", "create", "Watched", "google_calendar")
    ident = json.loads(out)["id"]
    watcher = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "integrations.cli",
        "--target",
        f"127.0.0.1:{server.port}",
        "--json",
        "watch",
        "--limit",
        "1",
        stdout=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    output = watcher.stdout
    assert output is not None

    async def next_message() -> dict[str, Any]:
        line = await asyncio.wait_for(output.readline(), 30)  # safety bound only
        message: dict[str, Any] = json.loads(line)
        return message

    assert (await next_message())["snapshot"]["id"] == ident
    assert "snapshotComplete" in await next_message()
    # Subscribed: now the change happens, and the watcher sees it and stops (--limit 1).
    code, _, _ = await ctl(server, "delete", ident, "--yes")
    assert code == 0
    assert (await next_message())["deleted"]["id"] == ident
    assert await asyncio.wait_for(watcher.wait(), 30) == 0


async def test_an_operator_syncs_and_reads_in_80_columns(
    server: Server, sb: Sandbox, calendar: str
) -> None:
    """Full ids, states in words, the progress of a sync until it ends, runs and records."""
    code, out, _ = await ctl(server, "list")
    assert code == 0 and calendar in out and "active, synced" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out, _ = await ctl(server, "sync", calendar, "--wait")
    assert code == 0 and "succeeded: 2 pages, 3 written, 0 deleted" in out
    code, out, _ = await ctl(server, "get", calendar)
    assert code == 0
    for shown in (calendar, "active, synced", "safety brake", "last sync", "next sync"):
        assert shown in out
    assert re.search(r"records\s+3\b", out)
    code, out, _ = await ctl(server, "runs", calendar)
    assert code == 0 and "succeeded" in out and "manual" in out
    code, out, _ = await ctl(server, "--json", "records", calendar, "--page-size", "2")
    page = json.loads(out)
    assert len(page["items"]) == 2 and page["next_page_token"]
    code, out, _ = await ctl(
        server, "records", calendar, "--page-size", "2", "--page-token", page["next_page_token"]
    )
    assert code == 0 and "more:" not in out


async def test_get_explains_an_error_and_the_brake(
    server: Server, sb: Sandbox, calendar: str
) -> None:
    sb.state.inject(Provider.GOOGLE, Fault(FaultKind.UNAVAILABLE), times=None)
    code, out, _ = await ctl(server, "sync", calendar, "--wait")
    assert code == 6 and "failed" in out and "solution" in out
    code, out, _ = await ctl(server, "get", calendar)
    assert "error: service unavailable" in out
    assert "what it means" in out and "solution" in out
    assert "next retry" in out
    code, out, _ = await ctl(server, "test", calendar)
    assert code == 6 and "connection failed" in out
