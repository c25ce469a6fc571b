"""`integrationsctl`: the operators' command line for the integrations service.

Every verb shows people a view in words (`integrations.views`); `--json` prints the API's
JSON for scripts. Errors print the message, the reason, the details and what to do, and exit
with a documented code (see `ExitCode` and the README).
"""

from __future__ import annotations

import asyncio
import enum
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import timedelta
from functools import wraps
from typing import Any, NoReturn, ParamSpec, TypeVar

import grpc
import typer
from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.live import Live
from rich.text import Text

from integrations import views
from integrations.client import IntegrationsClient, IntegrationsError, tls_credentials
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import webhooks_pb2 as wh

P = ParamSpec("P")
T = TypeVar("T")

app = typer.Typer(help="Operate the integrations service.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


class ExitCode(enum.IntEnum):
    """What `integrationsctl` exits with (the README lists the same)."""

    OK = 0
    REFUSED = 1  # the service refused the request (invalid, not allowed now, stale etag…)
    USAGE = 2  # bad options or arguments
    NOT_FOUND = 3  # no such integration (for this tenant)
    UNAUTHENTICATED = 4  # missing or wrong API key / client certificate
    UNREACHABLE = 5  # the service (or its database) cannot be reached now: retry later
    FAILED = 6  # the operation ran and failed: a connection test, a sync run
    INTERRUPTED = 130  # Ctrl-C


_EXIT_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: ExitCode.NOT_FOUND,
    grpc.StatusCode.UNAUTHENTICATED: ExitCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED: ExitCode.UNAUTHENTICATED,
    grpc.StatusCode.UNAVAILABLE: ExitCode.UNREACHABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: ExitCode.UNREACHABLE,
}


class Options:
    """Global options, set by the callback."""

    target = "localhost:50051"
    api_key: str | None = None
    as_json = False
    credentials: grpc.ChannelCredentials | None = None


@app.callback()
def _global(
    target: str = typer.Option(
        "localhost:50051", envvar="INTEGRATIONS_TARGET", help="host:port of the service"
    ),
    api_key: str = typer.Option("", envvar="INTEGRATIONS_API_KEY", help="tenant API key"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of views"),
    tls: bool = typer.Option(
        False, "--tls", envvar="INTEGRATIONS_TLS", help="TLS, trusting the system's CAs"
    ),
    ca: str = typer.Option(
        "", envvar="INTEGRATIONS_CA", help="PEM file of the CA that signed the server (TLS)"
    ),
    cert: str = typer.Option(
        "", envvar="INTEGRATIONS_CERT", help="client certificate PEM file (mutual TLS)"
    ),
    key: str = typer.Option("", envvar="INTEGRATIONS_KEY", help="client key PEM file"),
) -> None:
    Options.target, Options.api_key, Options.as_json = target, api_key or None, as_json
    if tls or ca or cert or key:
        try:
            Options.credentials = tls_credentials(ca_file=ca, cert_file=cert, key_file=key)
        except (OSError, ValueError) as exc:
            _usage(f"TLS files: {exc}")


def _usage(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(ExitCode.USAGE)


def _hint(error: IntegrationsError) -> str:
    """What to do about an error, in words."""
    wait = f" in {views.duration(error.retry_after)}" if error.retry_after is not None else ""
    by_reason = {
        "DATABASE_UNAVAILABLE": f"the service cannot reach its database; retry{wait or ' shortly'}",
        "ETAG_MISMATCH": "someone changed it meanwhile: `get` shows the current etag; retry",
        "TRANSITION_NOT_ALLOWED": "allowed now: "
        + error.metadata.get("allowed_actions", "see `get`").replace(",", ", "),
        "SHUTTING_DOWN": "this replica is shutting down; retry (another one answers)",
    }
    if error.reason in by_reason:
        return by_reason[error.reason]
    by_code = {
        grpc.StatusCode.UNAVAILABLE: f"is the service running at {Options.target}? Check "
        "--target (INTEGRATIONS_TARGET), and --ca / --tls if it serves TLS",
        grpc.StatusCode.DEADLINE_EXCEEDED: "the service did not answer in time; retry",
        grpc.StatusCode.UNAUTHENTICATED: "pass a valid API key (--api-key or "
        "INTEGRATIONS_API_KEY) or a mapped client certificate (--cert, --key)",
        grpc.StatusCode.NOT_FOUND: "check the id: `integrationsctl list` shows your tenant's",
        grpc.StatusCode.INVALID_ARGUMENT: "fix the fields above and try again",
        grpc.StatusCode.INTERNAL: "raise a ticket quoting the support reference above",
        grpc.StatusCode.RESOURCE_EXHAUSTED: f"slow down; retry{wait or ' later'}",
    }
    return by_code.get(error.code, f"retry{wait}" if wait else "")


def report_error(error: IntegrationsError) -> ExitCode:
    """Print a failed call for people (or as JSON) and return its exit code."""
    code = _EXIT_BY_CODE.get(error.code, ExitCode.REFUSED)
    hint = _hint(error)
    if Options.as_json:
        errors.print_json(
            json.dumps(
                {
                    "code": error.code.name,
                    "message": error.message,
                    "reason": error.reason,
                    "metadata": error.metadata,
                    "violations": error.violations,
                    "solution": hint,
                    "exit_code": int(code),
                }
            )
        )
        return code
    errors.print(Text(f"error: {error.message}", style="red"), soft_wrap=True)
    errors.print(f"  reason: {error.reason or '-'} ({error.code.name})", soft_wrap=True)
    for name, description in error.violations.items():
        errors.print(f"  {name}: {description}", soft_wrap=True)
    for name, value in error.metadata.items():
        errors.print(f"  {name} = {value}", soft_wrap=True)
    if hint:
        errors.print(f"  solution: {hint}", soft_wrap=True)
    return code


def _run(command: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async command with a client, turning service errors into a clean exit."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            asyncio.run(command(*args, **kwargs))
        except IntegrationsError as error:
            raise typer.Exit(report_error(error)) from None
        except KeyboardInterrupt:
            raise typer.Exit(ExitCode.INTERRUPTED) from None

    return wrapper


def _client() -> IntegrationsClient:
    return IntegrationsClient(
        Options.target, api_key=Options.api_key, credentials=Options.credentials
    )


def _show(message: Message, view: Callable[[], RenderableType]) -> None:
    if Options.as_json:
        console.print_json(json_format.MessageToJson(message))
    else:
        console.print(view())


def _show_list(items: list[Any], view: RenderableType, next_token: str = "") -> None:
    if Options.as_json:
        document: Any = [json_format.MessageToDict(i) for i in items]
        if next_token:
            document = {"items": document, "next_page_token": next_token}
        console.print_json(json.dumps(document))
        return
    console.print(view)
    if next_token:
        console.print(f"more: --page-token {next_token}", style="dim", soft_wrap=True)


def _statuses(names: list[str]) -> list[pb.Status.ValueType]:
    try:
        return [pb.Status.Value(f"STATUS_{s.upper()}") for s in names]
    except ValueError:
        _usage(
            f"unknown status in {names}: use draft, configure, testing, active, paused, "
            "error or disconnected"
        )


def _parse(text: str, message: Message, what: str) -> Any:
    try:
        return json_format.Parse(text, message)
    except json_format.ParseError as exc:
        _usage(f"{what} is not valid JSON for {message.DESCRIPTOR.name}: {exc}")


@app.command("list")
@_run
async def list_(
    status: list[str] = typer.Option([], help="only these statuses, e.g. active, error"),
    connector: str = typer.Option("", help="only this connector type"),
    page_size: int = typer.Option(50, help="integrations per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """List integrations, newest first (full ids, states in words)."""
    async with _client() as client:
        found, token = await client.list_page(
            statuses=_statuses(status),
            connector_type=connector,
            page_size=page_size,
            page_token=page_token,
        )
    _show_list(found, views.integrations_table(found), token)


@app.command()
@_run
async def get(integration_id: str) -> None:
    """Show one integration: state, error with its meaning and solution, safety brake, last
    and next sync, records."""
    async with _client() as client:
        found = await client.get(integration_id)
    _show(found, lambda: views.integration_view(found))


@app.command()
@_run
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
    parsed = _parse(config, pb.ConnectorConfig(), "--config") if config else None
    secrets = _parse(credentials, pb.Credentials(), "--credentials") if credentials else None
    async with _client() as client:
        created = await client.create(
            name,
            connector,
            config=parsed,
            credentials=secrets,
            sync_interval=timedelta(seconds=interval) if interval else None,
            breaker_threshold=breaker_threshold or None,
        )
    _show(created, lambda: views.integration_view(created))


@app.command()
@_run
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
    complete config is tested at once."""
    parsed = _parse(config, pb.ConnectorConfig(), "--config") if config else None
    secrets = _parse(credentials, pb.Credentials(), "--credentials") if credentials else None
    async with _client() as client:
        answer = await client.configure(
            integration_id,
            etag=etag,
            display_name=name,
            config=parsed,
            credentials=secrets,
            sync_interval=timedelta(seconds=interval) if interval else None,
            breaker_threshold=breaker_threshold,
        )
    _show(answer, lambda: _with_test(answer.integration, answer))


def _with_test(
    integration: pb.Integration, answer: api.ConfigureResponse | api.ReauthorizeResponse
) -> RenderableType:
    from rich.console import Group

    if answer.HasField("test"):
        return Group(views.integration_view(integration), views.test_view(answer.test))
    return views.integration_view(integration)


@app.command()
@_run
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
    async with _client() as client:
        if credentials:
            secrets = _parse(credentials, pb.Credentials(), "--credentials")
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
        console.print(_with_test(answer.integration, answer))
    if answer.HasField("test") and not answer.test.ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
@_run
async def pause(integration_id: str, reason: str = typer.Option("", help="why")) -> None:
    """Pause an integration (its cursor is kept)."""
    async with _client() as client:
        paused = await client.pause(integration_id, reason=reason)
    _show(paused, lambda: views.integration_view(paused))


@app.command()
@_run
async def resume(integration_id: str) -> None:
    """Resume a paused integration from where it left off."""
    async with _client() as client:
        resumed = await client.resume(integration_id)
    _show(resumed, lambda: views.integration_view(resumed))


@app.command()
@_run
async def test(integration_id: str) -> None:
    """Test an integration's connection now (exit code 6 when it fails)."""
    async with _client() as client:
        result = await client.test_connection(integration_id)
    _show(result, lambda: views.test_view(result))
    if not result.ok:
        raise typer.Exit(ExitCode.FAILED)


@app.command()
@_run
async def sync(
    integration_id: str,
    wait: bool = typer.Option(False, help="show its progress until the run ends"),
) -> None:
    """Start a sync now (a second one while it runs joins the running one)."""
    async with _client() as client:
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
@_run
async def runs(
    integration_id: str,
    page_size: int = typer.Option(20, help="runs per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """An integration's sync runs, newest first."""
    async with _client() as client:
        found, token = await client.sync_runs_page(
            integration_id, page_size=page_size, page_token=page_token
        )
    _show_list(found, views.runs_table(found), token)


@app.command()
@_run
async def records(
    integration_id: str,
    page_size: int = typer.Option(50, help="records per page"),
    page_token: str = typer.Option("", help="the page after a previous one"),
) -> None:
    """An integration's synced records."""
    async with _client() as client:
        found, token = await client.records_page(
            integration_id, page_size=page_size, page_token=page_token
        )
    _show_list(found, views.records_table(found), token)


@app.command()
@_run
async def delete(
    integration_id: str, yes: bool = typer.Option(False, "--yes", help="do not ask")
) -> None:
    """Delete an integration and ALL its data."""
    if not yes and not typer.confirm("All data of this integration will be lost. Delete?"):
        raise typer.Exit(ExitCode.REFUSED)
    async with _client() as client:
        deleted = await client.delete(integration_id)
    _show(
        deleted,
        lambda: Text(f"deleted {deleted.id} and {deleted.records_deleted:,} records"),
    )


@app.command()
@_run
async def watch(
    status: list[str] = typer.Option([], help="only these statuses"),
    connector: str = typer.Option("", help="connector type"),
    integration_id: list[str] = typer.Option([], "--id", help="only these integrations"),
    resume_after: int = typer.Option(0, help="resume after this revision"),
    limit: int = typer.Option(0, help="stop after this many changes (0: never)"),
) -> None:
    """Follow status changes as they happen (reconnects and resumes by itself)."""
    changes = 0
    async with _client() as client:
        async for message in client.watch(
            ids=integration_id,
            statuses=_statuses(status),
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
@_run
async def events(integration_id: str, limit: int = typer.Option(20)) -> None:
    """The integration's history of status changes, newest first."""
    async with _client() as client:
        found = []
        async for event in client.events(integration_id):
            found.append(event)
            if len(found) >= limit:
                break
    _show_list(found, views.events_table(found))


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


webhooks = typer.Typer(help="Webhook endpoints of your tenant.", no_args_is_help=True)
app.add_typer(webhooks, name="webhooks")

_EVENT_HELP = "event types: status_changed, sync_run_finished, records_changed, endpoint_disabled"


def _event_types(names: list[str]) -> list[Any]:
    return [wh.WebhookEventType.Value(f"WEBHOOK_EVENT_TYPE_{n.upper()}") for n in names]


@webhooks.command("list")
@_run
async def webhooks_list() -> None:
    """List the webhook endpoints, newest first."""
    async with _client() as client:
        found = await _collect(client.webhooks())
    _show_list(found, views.webhooks_table(found))


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
    _show(created, lambda: views.webhook_secret_view(created.webhook, created.secret))


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
    _show(updated, lambda: views.webhooks_table([updated]))


@webhooks.command("rotate")
@_run
async def webhooks_rotate(
    webhook_id: str,
    overlap: int = typer.Option(86400, help="seconds the old secret keeps signing too"),
) -> None:
    """Replace the signing secret; prints the new one, shown only this once."""
    async with _client() as client:
        rotated = await client.rotate_webhook_secret(webhook_id, overlap=timedelta(seconds=overlap))
    _show(rotated, lambda: views.webhook_secret_view(rotated.webhook, rotated.secret))


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
    _show_list(found, views.deliveries_table(found))


async def _collect(items: AsyncIterator[T]) -> list[T]:
    """Every item of a paginated listing."""
    return [item async for item in items]


if __name__ == "__main__":
    app()
