"""The `integrationsctl webhooks` sub-app (list, create, update, rotate, delete the tenant's
webhook endpoints) and `deliveries`, a webhook's delivery log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeVar

import typer

from integrations import views
from integrations.cli.exits import async_command
from integrations.cli.main import app
from integrations.cli.options import open_client
from integrations.cli.output import console, show, show_list
from integrations.v1 import webhooks_pb2 as wh

T = TypeVar("T")

webhooks = typer.Typer(help="Webhook endpoints of your tenant.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")

_EVENT_HELP = "event types: status_changed, sync_run_finished, records_changed, endpoint_disabled"


def _event_types(names: list[str]) -> list[Any]:
    return [wh.WebhookEventType.Value(f"WEBHOOK_EVENT_TYPE_{n.upper()}") for n in names]


@webhooks.command("list")
@async_command
async def webhooks_list() -> None:
    """List the webhook endpoints, newest first."""
    async with open_client() as client:
        found = await _collect(client.webhooks())
    show_list(found, views.webhooks_table(found))


@webhooks.command("create")
@async_command
async def webhooks_create(
    url: str,
    event: list[str] = typer.Option([], help=f"only these {_EVENT_HELP} (default: all)"),
    description: str = typer.Option("", help="who receives, for people"),
) -> None:
    """Create a webhook endpoint; prints its signing secret, which is shown only this once."""
    async with open_client() as client:
        created = await client.create_webhook(
            url, event_types=_event_types(event), description=description
        )
    show(created, lambda: views.webhook_secret_view(created.webhook, created.secret))


@webhooks.command("update")
@async_command
async def webhooks_update(
    webhook_id: str,
    url: str = typer.Option(None, help="new URL"),
    description: str = typer.Option(None, help="new description"),
    event: list[str] = typer.Option([], help=f"new {_EVENT_HELP}"),
    enable: bool = typer.Option(None, "--enable/--disable", help="enable (again) or disable"),
) -> None:
    """Change a webhook endpoint; --enable re-enables one the service disabled."""
    async with open_client() as client:
        updated = await client.update_webhook(
            webhook_id,
            url=url,
            description=description,
            event_types=_event_types(event) if event else None,
            enabled=enable,
        )
    show(updated, lambda: views.webhooks_table([updated]))


@webhooks.command("rotate")
@async_command
async def webhooks_rotate(
    webhook_id: str,
    overlap: int = typer.Option(86400, help="seconds the old secret keeps signing too"),
) -> None:
    """Replace the signing secret; prints the new one, shown only this once."""
    async with open_client() as client:
        rotated = await client.rotate_webhook_secret(webhook_id, overlap=timedelta(seconds=overlap))
    show(rotated, lambda: views.webhook_secret_view(rotated.webhook, rotated.secret))


@webhooks.command("delete")
@async_command
async def webhooks_delete(webhook_id: str) -> None:
    """Delete a webhook endpoint and its delivery log."""
    async with open_client() as client:
        await client.delete_webhook(webhook_id)
    console.print(f"deleted {webhook_id}")


@app.command()
@async_command
async def deliveries(webhook_id: str, limit: int = typer.Option(20)) -> None:
    """A webhook's delivery log, newest first: each attempt's status, latency and error."""
    async with open_client() as client:
        found = (await _collect(client.webhook_deliveries(webhook_id)))[:limit]
    show_list(found, views.deliveries_table(found))


async def _collect(items: AsyncIterator[T]) -> list[T]:
    """Every item of a paginated listing."""
    return [item async for item in items]
