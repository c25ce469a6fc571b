"""The `integrationsctl` verbs that follow what changes: status changes as they happen
(`watch`), an integration's history of status changes (`events`) and its record change feed
(`changes`)."""

from __future__ import annotations

import json
import time

import typer
from google.protobuf import json_format

from integrations import views
from integrations.cli.exits import async_command
from integrations.cli.main import app, statuses
from integrations.cli.options import Options, open_client
from integrations.cli.output import console, show_list
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api


@app.command()
@async_command
async def watch(
    status: list[str] = typer.Option([], help="only these statuses"),
    connector: str = typer.Option("", help="connector type"),
    integration_id: list[str] = typer.Option([], "--id", help="only these integrations"),
    resume_after: int = typer.Option(0, help="resume after this revision"),
    limit: int = typer.Option(0, help="stop after this many changes (0: never)"),
) -> None:
    """Follow status changes as they happen (reconnects and resumes by itself)."""
    changes = 0
    async with open_client() as client:
        async for message in client.watch(
            ids=integration_id,
            statuses=statuses(status),
            connector_type=connector,
            resume_after_revision=resume_after,
        ):
            kind = message.WhichOneof("kind")
            if Options.as_json:
                console.print(json_format.MessageToJson(message, indent=None), soft_wrap=True)
            elif kind in ("snapshot", "change"):
                _watch_line(message, kind)
            elif kind == "deleted":
                console.print(f"r{message.deleted.revision} {message.deleted.id} deleted")
            elif kind == "snapshot_complete":
                console.print(f"-- snapshot complete at r{message.snapshot_complete.revision}")
            changes += kind in ("change", "deleted")
            if limit and changes >= limit:
                return


def _watch_line(message: api.WatchStatusResponse, kind: str) -> None:
    i = getattr(message, kind)
    stamp = time.strftime("%H:%M:%S")
    line = f"{stamp} r{i.revision} {i.id} {i.display_name!r}: {views.state(i)}"
    if message.HasField("event"):
        line += f" — {message.event.trigger}: {message.event.reason}".rstrip(": ")
    console.print(line, soft_wrap=True, markup=False, highlight=False)
    if kind == "change" and i.HasField("last_error") and i.status == pb.STATUS_ERROR:
        console.print(f"    solution: {i.last_error.solution}", soft_wrap=True, markup=False)


@app.command()
@async_command
async def events(integration_id: str, limit: int = typer.Option(20)) -> None:
    """The integration's history of status changes, newest first."""
    async with open_client() as client:
        found = []
        async for event in client.events(integration_id):
            found.append(event)
            if len(found) >= limit:
                break
    show_list(found, views.events_table(found))


@app.command()
@async_command
async def changes(
    integration_id: str,
    after: str = typer.Option("", help="the cursor to continue after (default: from the start)"),
    follow: bool = typer.Option(False, help="keep following (polls when caught up)"),
    limit: int = typer.Option(0, help="stop after this many changes (0: when caught up)"),
) -> None:
    """The integration's record changes after a cursor, then the cursor to continue from."""
    seen = 0
    cursor = after
    async with open_client() as client:
        async for page in client.record_changes(integration_id, after=after, follow=follow):
            for change in page.changes:
                if Options.as_json:
                    console.print(json_format.MessageToJson(change, indent=None), soft_wrap=True)
                else:
                    kind = views.word(pb.RecordChangeKind, change.kind)
                    when = change.change_time.ToDatetime().isoformat(timespec="seconds")
                    console.print(f"#{change.sequence} {kind} {change.record_id} {when}")
                seen += 1
            cursor = page.cursor
            if limit and seen >= limit:
                break
    if Options.as_json:
        console.print(json.dumps({"cursor": cursor}), soft_wrap=True)
    else:
        console.print(f"-- {seen} changes; continue with --after {cursor}", soft_wrap=True)
