"""The `integrationsctl` verbs on integrations: list, get, create, configure, reauthorize,
pause, resume, test, sync (with `--wait`, its progress), runs, records and delete."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import typer
from google.protobuf import json_format
from rich.live import Live
from rich.text import Text

from integrations import views
from integrations.cli.exits import ExitCode, async_command
from integrations.cli.main import app, parse_json, statuses
from integrations.cli.options import Options, open_client
from integrations.cli.output import console, errors, show, show_list, with_test
from integrations.client import IntegrationsClient
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api


@app.command("list")
@async_command
async def list_(
    status: list[str] = typer.Option([], help="only these statuses, e.g. active, error"),
    connector: str = typer.Option("", help="only this connector type"),
    page_size: int = typer.Option(50, help="integrations per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """List integrations, newest first (full ids, states in words)."""
    async with open_client() as client:
        found, token = await client.list_page(
            statuses=statuses(status),
            connector_type=connector,
            page_size=page_size,
            page_token=page_token,
        )
    show_list(found, views.integrations_table(found), token)


@app.command()
@async_command
async def get(integration_id: str) -> None:
    """Show one integration: state, error with its meaning and solution, safety brake, last
    and next sync, records."""
    async with open_client() as client:
        found = await client.get(integration_id)
    show(found, lambda: views.integration_view(found))


@app.command()
@async_command
async def create(
    name: str,
    connector: str,
    config: str = typer.Option(
        "", help='config as JSON, e.g. \'{"google_calendar": {"calendar_id": "x"}}\''
    ),
    credentials: str = typer.Option(
        "", help='credentials as JSON, e.g. \'{"bearer_token": "..."}\' (write-only)'
    ),
    interval: int = typer.Option(0, help="sync interval in seconds"),
    breaker_threshold: int = typer.Option(
        0, help="failures in a row that auto-pause it (0: the deployment's)"
    ),
) -> None:
    """Create an integration (tested at once when its setup is complete)."""
    parsed = parse_json(config, pb.ConnectorConfig(), "--config") if config else None
    secrets = parse_json(credentials, pb.Credentials(), "--credentials") if credentials else None
    async with open_client() as client:
        created = await client.create(
            name,
            connector,
            config=parsed,
            credentials=secrets,
            sync_interval=timedelta(seconds=interval) if interval else None,
            breaker_threshold=breaker_threshold or None,
        )
    show(created, lambda: views.integration_view(created))


@app.command()
@async_command
async def configure(
    integration_id: str,
    name: str = typer.Option(None, help="new display name"),
    config: str = typer.Option("", help="new config as JSON (replaces the old one)"),
    credentials: str = typer.Option("", help="new credentials as JSON (write-only)"),
    interval: int = typer.Option(0, help="new sync interval in seconds"),
    breaker_threshold: int = typer.Option(
        None, help="failures in a row that auto-pause it (0: back to the deployment's)"
    ),
    etag: str = typer.Option("", help="fail if it changed since this etag (from `get`)"),
) -> None:
    """Change an integration's name, config, credentials, interval or brake threshold; a
    complete config is tested at once (exit code 6 when that test fails)."""
    parsed = parse_json(config, pb.ConnectorConfig(), "--config") if config else None
    secrets = parse_json(credentials, pb.Credentials(), "--credentials") if credentials else None
    async with open_client() as client:
        answer = await client.configure(
            integration_id,
            etag=etag,
            display_name=name,
            config=parsed,
            credentials=secrets,
            sync_interval=timedelta(seconds=interval) if interval else None,
            breaker_threshold=breaker_threshold,
        )
    show(answer, lambda: with_test(answer.integration, answer))
    if answer.HasField("test") and not answer.test.ok:
        raise typer.Exit(ExitCode.FAILED)  # the change is kept; its connection does not work


@app.command()
@async_command
async def reauthorize(
    integration_id: str,
    credentials: str = typer.Option(
        "", help="new credentials as JSON, tested at once; without it, start an OAuth sign-in"
    ),
    return_url: str = typer.Option("", help="where the browser goes after the sign-in"),
    etag: str = typer.Option("", help="fail if it changed since this etag"),
) -> None:
    """Renew credentials: new ones given directly, or an OAuth sign-in whose URL is printed
    (open it in a browser)."""
    async with open_client() as client:
        if credentials:
            secrets = parse_json(credentials, pb.Credentials(), "--credentials")
            answer = await client.reauthorize(integration_id, etag=etag, credentials=secrets)
        else:
            answer = await client.reauthorize(
                integration_id, etag=etag, sign_in=api.OAuthSignIn(return_url=return_url)
            )
    if Options.as_json:
        console.print_json(json_format.MessageToJson(answer))
    elif answer.authorization_url:
        console.print("Open this URL in a browser to sign in:")
        console.print(answer.authorization_url, soft_wrap=True, markup=False, highlight=False)
    else:
        console.print(with_test(answer.integration, answer))
    if answer.HasField("test") and not answer.test.ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
@async_command
async def pause(integration_id: str, reason: str = typer.Option("", help="why")) -> None:
    """Pause an integration (its cursor is kept)."""
    async with open_client() as client:
        paused = await client.pause(integration_id, reason=reason)
    show(paused, lambda: views.integration_view(paused))


@app.command()
@async_command
async def resume(integration_id: str) -> None:
    """Resume a paused integration from where it left off."""
    async with open_client() as client:
        resumed = await client.resume(integration_id)
    show(resumed, lambda: views.integration_view(resumed))


@app.command()
@async_command
async def test(integration_id: str) -> None:
    """Test an integration's connection now (exit code 6 when it fails)."""
    async with open_client() as client:
        result = await client.test_connection(integration_id)
    show(result, lambda: views.test_view(result))
    if not result.ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
@async_command
async def sync(
    integration_id: str,
    wait: bool = typer.Option(False, help="show its progress until the run ends"),
) -> None:
    """Start a sync now (a second one while it runs joins the running one)."""
    async with open_client() as client:
        started = await client.sync(integration_id)
        run = started.run
        if wait:
            run = await _follow(client, integration_id, run)
    if Options.as_json:
        console.print_json(json_format.MessageToJson(run))
    elif not wait:
        console.print(f"sync run {run.id} started ({views.word(pb.SyncRunTrigger, run.trigger)})")
    if wait and run.outcome != pb.SYNC_RUN_OUTCOME_SUCCEEDED:
        raise typer.Exit(ExitCode.FAILED)


async def _follow(client: IntegrationsClient, integration_id: str, run: pb.SyncRun) -> pb.SyncRun:
    """Poll the run until it ends, showing pages and records as they commit."""
    started = time.monotonic()

    def progress(current: pb.SyncRun) -> Text:
        took = views.duration(timedelta(seconds=time.monotonic() - started))
        return Text(f"syncing {current.id}: {views.run_line(current)} ({took})")

    with Live(progress(run), console=errors, transient=True, refresh_per_second=4) as live:
        while run.outcome == pb.SYNC_RUN_OUTCOME_RUNNING:
            await asyncio.sleep(0.25)
            runs, _ = await client.sync_runs_page(integration_id, page_size=5)
            run = next((r for r in runs if r.id == run.id), run)
            live.update(progress(run))
    if not Options.as_json:
        took = views.duration(timedelta(seconds=time.monotonic() - started))
        outcome = views.word(pb.SyncRunOutcome, run.outcome)
        style = "green" if run.outcome == pb.SYNC_RUN_OUTCOME_SUCCEEDED else "red"
        line = f"sync run {run.id} {outcome}: {views.run_line(run)} in {took}"
        console.print(Text(line, style=style), soft_wrap=True)
        if run.HasField("error"):
            console.print(views.test_view(api.TestConnectionResponse(ok=False, error=run.error)))
    return run


@app.command()
@async_command
async def runs(
    integration_id: str,
    page_size: int = typer.Option(20, help="runs per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """An integration's sync runs, newest first."""
    async with open_client() as client:
        found, token = await client.sync_runs_page(
            integration_id, page_size=page_size, page_token=page_token
        )
    show_list(found, views.runs_table(found), token)


@app.command()
@async_command
async def records(
    integration_id: str,
    page_size: int = typer.Option(50, help="records per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """An integration's synced records."""
    async with open_client() as client:
        found, token = await client.records_page(
            integration_id, page_size=page_size, page_token=page_token
        )
    show_list(found, views.records_table(found), token)


@app.command()
@async_command
async def delete(
    integration_id: str, yes: bool = typer.Option(False, "--yes", help="do not ask")
) -> None:
    """Delete an integration and ALL its data."""
    if not yes and not typer.confirm("All data of this integration will be lost. Delete?"):
        raise typer.Exit(ExitCode.REFUSED)
    async with open_client() as client:
        deleted = await client.delete(integration_id)
    show(
        deleted,
        lambda: Text(f"deleted {deleted.id} and {deleted.records_deleted:,} records"),
    )
