"""`integrationsctl` against a running service, as an operator types it."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from service.api.server import Server


async def ctl(server: Server, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "integrations.cli",
        "--target",
        f"127.0.0.1:{server.port}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_create_list_pause_and_history(server: Server) -> None:
    code, out, _ = await ctl(
        server,
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
    assert "Team calendar" in out and "CONFIGURE" in out
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
    code, _, err = await ctl(server, "pause", "5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11")
    assert code == 1 and "NOT_FOUND" in err and "INTEGRATION_NOT_FOUND" in err


async def test_watch_follows_changes(server: Server) -> None:
    code, out, _ = await ctl(server, "create", "Watched", "google_calendar")
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
