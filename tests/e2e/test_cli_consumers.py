"""`integrationsctl changes`, `webhooks` and `deliveries` against a running service."""

from __future__ import annotations

import json

from integrations.v1 import service_pb2 as api

from service.api.server import Server
from tests.e2e.test_cli import ctl
from tests.support.rpc import Stub


async def test_webhooks_deliveries_and_changes(server: Server, stub: Stub) -> None:
    code, out, _ = await ctl(
        server,
        "webhooks",
        "create",
        "https://hooks.example.com/integrations",
        "--event",
        "status_changed",
        "--description",
        "dashboard",
    )
    assert code == 0
    assert "secret (shown only now): whsec_" in out
    code, out, _ = await ctl(server, "--json", "webhooks", "list")
    [webhook] = json.loads(out)
    assert webhook["eventTypes"] == ["WEBHOOK_EVENT_TYPE_STATUS_CHANGED"]
    assert "whsec_" not in out
    # The human view in a narrow terminal: the id whole on one line (it is copied into the
    # next command), the long URL folded but all there, nothing wider than the terminal.
    for columns in (80, 60):
        code, out, _ = await ctl(server, "webhooks", "list", columns=columns)
        assert code == 0
        assert webhook["id"] in out.splitlines()[1]
        assert all(len(line) <= columns for line in out.splitlines())
        assert "…" not in out
        lines = out.splitlines()
        url_column = lines[0].index("url [events]")
        url = "".join("".join(line[url_column:].split()) for line in lines[1:])
        assert url == "https://hooks.example.com/integrations[status_changed]"
    created = await stub.Create(
        api.CreateRequest(display_name="Orders", connector_type="google_calendar")
    )

    code, out, _ = await ctl(server, "deliveries", webhook["id"])
    assert code == 0 and "status_changed" in out and "pending" in out

    code, out, _ = await ctl(server, "changes", created.integration.id)
    assert code == 0 and "0 changes; continue with --after " in out
