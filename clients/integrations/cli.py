"""`integrationsctl`: the operators' command line for the integrations service.

Tables for people (rich), `--json` for scripts. Errors print the gRPC code, the ErrorInfo
reason and the field violations, and exit non-zero.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from datetime import timedelta
from functools import wraps
from typing import Any, ParamSpec

import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.table import Table

from integrations.client import IntegrationsClient, IntegrationsError
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import webhooks_pb2 as wh

P = ParamSpec("P")

app = typer.Typer(help="Operate the integrations service.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


class Options:
    """Global options, set by the callback."""

    target = "localhost:50051"
    api_key: str | None = None
    as_json = False


@app.callback()
def _global(
    target: str = typer.Option(
        "localhost:50051", envvar="INTEGRATIONS_TARGET", help="host:port of the service"
    ),
    api_key: str = typer.Option("", envvar="INTEGRATIONS_API_KEY", help="tenant API key"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
) -> None:
    Options.target, Options.api_key, Options.as_json = target, api_key or None, as_json


def _run(command: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async command with a client, turning service errors into a clean exit."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            asyncio.run(command(*args, **kwargs))
        except IntegrationsError as error:
            errors.print(f"[red]{error}[/red]")
            for name, description in error.violations.items():
                errors.print(f"  {name}: {description}")
            for name, value in error.metadata.items():
                errors.print(f"  {name} = {value}")
            raise typer.Exit(1) from None

    return wrapper


def _client() -> IntegrationsClient:
    return IntegrationsClient(Options.target, api_key=Options.api_key)


def _show(message: Message) -> None:
    console.print_json(json_format.MessageToJson(message))


def _name(enum: Any, value: int) -> str:
    return str(enum.Name(value)).split("_", 1)[1] if value else ""


def _table(integrations: list[pb.Integration]) -> None:
    if Options.as_json:
        console.print_json(json.dumps([json_format.MessageToDict(i) for i in integrations]))
        return
    table = Table("id", "name", "connector", "status", "sync", "error", "revision")
    for i in integrations:
        error = pb.ErrorCode.Name(i.last_error.code)[11:] if i.HasField("last_error") else ""
        table.add_row(
            i.id,
            i.display_name,
            i.connector_type,
            _name(pb.Status, i.status),
            _name(pb.SyncState, i.sync_state),
            error,
            str(i.revision),
        )
    console.print(table)


async def _collect(items: Any) -> list[Any]:
    return [item async for item in items]


@app.command("list")
@_run
async def list_(
    status: list[str] = typer.Option([], help="e.g. ACTIVE, ERROR"),
    connector: str = typer.Option("", help="connector type"),
) -> None:
    """List integrations, newest first."""
    statuses = [pb.Status.Value(f"STATUS_{s.upper()}") for s in status]
    async with _client() as client:
        _table(await _collect(client.list(statuses=statuses, connector_type=connector)))


@app.command()
@_run
async def get(integration_id: str) -> None:
    """Show one integration."""
    async with _client() as client:
        _show(await client.get(integration_id))


@app.command()
@_run
async def create(
    name: str,
    connector: str,
    config: str = typer.Option(
        "", help='config as JSON, e.g. \'{"google_calendar": {"calendar_id": "x"}}\''
    ),
    interval: int = typer.Option(0, help="sync interval in seconds"),
    breaker_threshold: int = typer.Option(
        0, help="failures in a row that auto-pause it (0: the deployment's)"
    ),
) -> None:
    """Create an integration."""
    parsed = json_format.Parse(config, pb.ConnectorConfig()) if config else None
    async with _client() as client:
        _show(
            await client.create(
                name,
                connector,
                config=parsed,
                sync_interval=timedelta(seconds=interval) if interval else None,
                breaker_threshold=breaker_threshold or None,
            )
        )


@app.command()
@_run
async def pause(integration_id: str, reason: str = typer.Option("", help="why")) -> None:
    """Pause an integration (its cursor is kept)."""
    async with _client() as client:
        _table([await client.pause(integration_id, reason=reason)])


@app.command()
@_run
async def resume(integration_id: str) -> None:
    """Resume a paused integration from where it left off."""
    async with _client() as client:
        _table([await client.resume(integration_id)])


@app.command()
@_run
async def test(integration_id: str) -> None:
    """Test an integration's connection now."""
    async with _client() as client:
        _show(await client.test_connection(integration_id))


@app.command()
@_run
async def sync(
    integration_id: str, wait: bool = typer.Option(False, help="wait for the end")
) -> None:
    """Start a sync now."""
    async with _client() as client:
        _show(await client.sync(integration_id, wait=wait))


@app.command()
@_run
async def delete(
    integration_id: str, yes: bool = typer.Option(False, "--yes", help="do not ask")
) -> None:
    """Delete an integration and ALL its data."""
    if not yes and not typer.confirm("All data of this integration will be lost. Delete?"):
        raise typer.Exit(1)
    async with _client() as client:
        _show(await client.delete(integration_id))


@app.command()
@_run
async def watch(
    status: list[str] = typer.Option([], help="only these statuses"),
    connector: str = typer.Option("", help="connector type"),
    resume_after: int = typer.Option(0, help="resume after this revision"),
    limit: int = typer.Option(0, help="stop after this many changes (0: never)"),
) -> None:
    """Follow status changes as they happen (reconnects and resumes by itself)."""
    statuses = [pb.Status.Value(f"STATUS_{s.upper()}") for s in status]
    changes = 0
    async with _client() as client:
        async for message in client.watch(
            statuses=statuses, connector_type=connector, resume_after_revision=resume_after
        ):
            kind = message.WhichOneof("kind")
            if Options.as_json:
                console.print(json_format.MessageToJson(message, indent=None), soft_wrap=True)
            elif kind in ("snapshot", "change"):
                i = getattr(message, kind)
                reason = message.event.reason if message.HasField("event") else ""
                console.print(
                    f"r{i.revision} {i.id} {i.display_name!r} "
                    f"{_name(pb.Status, i.status)} {reason}".rstrip()
                )
            elif kind == "deleted":
                console.print(f"r{message.deleted.revision} {message.deleted.id} deleted")
            elif kind == "snapshot_complete":
                console.print(f"-- snapshot complete at r{message.snapshot_complete.revision}")
            changes += kind in ("change", "deleted")
            if limit and changes >= limit:
                return


@app.command()
@_run
async def events(integration_id: str, limit: int = typer.Option(20)) -> None:
    """The integration's history of status changes, newest first."""
    async with _client() as client:
        found = (await _collect(client.events(integration_id)))[:limit]
    if Options.as_json:
        console.print_json(json.dumps([json_format.MessageToDict(e) for e in found]))
        return
    table = Table("revision", "when", "trigger", "from", "to", "actor", "reason")
    for e in found:
        table.add_row(
            str(e.revision),
            e.occur_time.ToDatetime().isoformat(timespec="seconds"),
            e.trigger,
            _name(pb.Status, e.from_status),
            _name(pb.Status, e.to_status),
            e.actor,
            e.reason,
        )
    console.print(table)


@app.command()
@_run
async def changes(
    integration_id: str,
    after: str = typer.Option("", help="the cursor to continue after (default: from the start)"),
    follow: bool = typer.Option(False, help="keep following (polls when caught up)"),
    limit: int = typer.Option(0, help="stop after this many changes (0: when caught up)"),
) -> None:
    """The integration's record changes after a cursor, then the cursor to continue from."""
    seen = 0
    cursor = after
    async with _client() as client:
        async for page in client.record_changes(integration_id, after=after, follow=follow):
            for change in page.changes:
                if Options.as_json:
                    console.print(json_format.MessageToJson(change, indent=None), soft_wrap=True)
                else:
                    kind = _name(pb.RecordChangeKind, change.kind)
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


webhooks = typer.Typer(help="Webhook endpoints of your tenant.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")

_EVENT_HELP = "event types: status_changed, sync_run_finished, records_changed, endpoint_disabled"


def _event_types(names: list[str]) -> list[Any]:
    return [wh.WebhookEventType.Value(f"WEBHOOK_EVENT_TYPE_{n.upper()}") for n in names]


def _webhook_table(items: list[wh.Webhook]) -> None:
    if Options.as_json:
        console.print_json(json.dumps([json_format.MessageToDict(w) for w in items]))
        return
    table = Table("id", "url", "events", "enabled", "failing since", "disabled because")
    for w in items:
        events = ", ".join(_name(wh.WebhookEventType, t).lower() for t in w.event_types)
        failing = (
            w.failing_since.ToDatetime().isoformat(timespec="seconds")
            if w.HasField("failing_since")
            else ""
        )
        table.add_row(
            w.id, w.url, events or "all", str(w.enabled).lower(), failing, w.disabled_reason
        )
    console.print(table)


@webhooks.command("list")
@_run
async def webhooks_list() -> None:
    """List the webhook endpoints, newest first."""
    async with _client() as client:
        _webhook_table(await _collect(client.webhooks()))


@webhooks.command("create")
@_run
async def webhooks_create(
    url: str,
    event: list[str] = typer.Option([], help=f"only these {_EVENT_HELP} (default: all)"),
    description: str = typer.Option("", help="who receives, for people"),
) -> None:
    """Create a webhook endpoint; prints its signing secret, which is shown only this once."""
    async with _client() as client:
        created = await client.create_webhook(
            url, event_types=_event_types(event), description=description
        )
    if Options.as_json:
        _show(created)
        return
    _webhook_table([created.webhook])
    console.print(f"secret (shown only now): {created.secret}", soft_wrap=True)


@webhooks.command("update")
@_run
async def webhooks_update(
    webhook_id: str,
    url: str = typer.Option(None, help="new URL"),
    description: str = typer.Option(None, help="new description"),
    event: list[str] = typer.Option([], help=f"new {_EVENT_HELP}"),
    enable: bool = typer.Option(None, "--enable/--disable", help="enable (again) or disable"),
) -> None:
    """Change a webhook endpoint; --enable re-enables one the service disabled."""
    async with _client() as client:
        updated = await client.update_webhook(
            webhook_id,
            url=url,
            description=description,
            event_types=_event_types(event) if event else None,
            enabled=enable,
        )
    _webhook_table([updated])


@webhooks.command("rotate")
@_run
async def webhooks_rotate(
    webhook_id: str,
    overlap: int = typer.Option(86400, help="seconds the old secret keeps signing too"),
) -> None:
    """Replace the signing secret; prints the new one, shown only this once."""
    async with _client() as client:
        rotated = await client.rotate_webhook_secret(webhook_id, overlap=timedelta(seconds=overlap))
    if Options.as_json:
        _show(rotated)
        return
    console.print(f"secret (shown only now): {rotated.secret}", soft_wrap=True)


@webhooks.command("delete")
@_run
async def webhooks_delete(webhook_id: str) -> None:
    """Delete a webhook endpoint and its delivery log."""
    async with _client() as client:
        await client.delete_webhook(webhook_id)
    console.print(f"deleted {webhook_id}")


@app.command()
@_run
async def deliveries(webhook_id: str, limit: int = typer.Option(20)) -> None:
    """A webhook's delivery log, newest first: each attempt's status, latency and error."""
    async with _client() as client:
        found = (await _collect(client.webhook_deliveries(webhook_id)))[:limit]
    if Options.as_json:
        console.print_json(json.dumps([json_format.MessageToDict(d) for d in found]))
        return
    table = Table("event", "type", "revision", "state", "attempt", "status", "latency", "error")
    for d in found:
        attempts = d.attempts or [wh.WebhookAttempt()]
        for a in attempts:
            latency = f"{a.latency.ToTimedelta().total_seconds() * 1000:.0f}ms" if a.attempt else ""
            table.add_row(
                d.event_id,
                _name(wh.WebhookEventType, d.event_type).lower(),
                str(d.revision),
                _name(wh.WebhookDeliveryState, d.state),
                str(a.attempt or ""),
                str(a.status_code or "") if a.attempt else "",
                latency,
                a.error,
            )
    console.print(table)


if __name__ == "__main__":
    app()
