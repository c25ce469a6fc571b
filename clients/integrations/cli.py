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


if __name__ == "__main__":
    app()
