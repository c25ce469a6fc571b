"""What `integrationsctl` shows people: integrations, runs, records, events and errors as
words, fitting an 80-column terminal. Ids are never shortened (they are what the next command
needs), states read as words ("active, synced", "error", "late"), times are UTC with how long
ago or ahead they are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api
from integrations.v1 import webhooks_pb2 as wh


def word(enum: Any, value: int) -> str:
    """An enum value as a lower-case word: STATUS_ACTIVE -> "active", 0 -> ""."""
    if not value:
        return ""
    name = str(enum.Name(value))
    prefix = str(enum.Name(0)).removesuffix("UNSPECIFIED")
    return name.removeprefix(prefix).replace("_", " ").lower()


def state(i: pb.Integration) -> str:
    """The integration's state in words: "active, synced", "active, syncing, late", "error:
    rate limited", "paused", "error, brake on"."""
    parts = [word(pb.Status, i.status)]
    if i.status == pb.STATUS_ACTIVE and i.sync_state:
        parts.append(word(pb.SyncState, i.sync_state))
    if i.status == pb.STATUS_ERROR and i.HasField("last_error"):
        parts[0] += f": {word(pb.ErrorCode, i.last_error.code)}"
    if i.breaker.state == pb.BREAKER_STATE_OPEN:
        parts.append("brake on")
    if i.late:
        parts.append("late")
    return ", ".join(parts)


def when(stamp: Timestamp, now: datetime | None = None) -> str:
    """`2026-11-29 15:02:03Z (12m ago)`, or "never" for an unset time."""
    if not stamp.seconds and not stamp.nanos:
        return "never"
    moment = stamp.ToDatetime(tzinfo=UTC)
    delta = moment - (now or datetime.now(UTC))
    shown = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    span = duration(abs(delta))
    if abs(delta) < timedelta(seconds=1):
        return f"{shown} (now)"
    return f"{shown} ({'in ' + span if delta > timedelta(0) else span + ' ago'})"


def duration(value: timedelta) -> str:
    """A short human duration: 450ms, 12s, 3m, 2h5m, 3d."""
    seconds = value.total_seconds()
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m" + (f"{seconds % 60:.0f}s" if seconds % 60 >= 1 else "")
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h" + (
            f"{seconds % 3600 // 60:.0f}m" if seconds % 3600 else ""
        )
    return f"{seconds / 86400:.0f}d"


def integrations_table(integrations: list[pb.Integration]) -> RenderableType:
    """One row per integration: the full id, its state in words, name and connector."""
    if not integrations:
        return Text("no integrations", style="dim")
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("state", overflow="fold")
    table.add_column(Text("name [connector]"), overflow="fold")
    for i in integrations:
        table.add_row(i.id, state(i), Text(f"{i.display_name} [{i.connector_type}]"))
    return table


def _error_lines(error: pb.IntegrationError, indent: str = "  ") -> list[tuple[str, str]]:
    rows = [
        (
            "error",
            f"{word(pb.ErrorCode, error.code)} ({word(pb.ErrorCategory, error.category)}): "
            f"{error.message}",
        ),
        (indent + "what it means", error.what_it_means),
        (indent + "solution", error.solution),
    ]
    if error.HasField("retry_after"):
        rows.append((indent + "retry after", duration(error.retry_after.ToTimedelta())))
    if error.support_reference:
        rows.append((indent + "support ref", error.support_reference))
    if error.HasField("occur_time"):
        rows.append((indent + "since", when(error.occur_time)))
    return rows


def _breaker(i: pb.Integration) -> str:
    b = i.breaker
    failures = f"{b.consecutive_failures} failure{'s' if b.consecutive_failures != 1 else ''}"
    if b.state == pb.BREAKER_STATE_OPEN:
        text = f"ON (auto-paused) since {when(b.open_time)}; {failures} in a row"
        if b.HasField("next_attempt_time"):
            text += f"; next probe {when(b.next_attempt_time)}"
        return text
    text = f"off; {failures} in a row (brake at {b.threshold})"
    if b.consecutive_failures and b.HasField("next_attempt_time"):
        text += f"; next retry {when(b.next_attempt_time)}"
    return text


def integration_view(i: pb.Integration) -> RenderableType:
    """Everything an operator asks about one integration."""
    rows: list[tuple[str, str]] = [
        ("id", i.id),
        ("name", i.display_name),
        ("connector", i.connector_type),
        ("state", state(i)),
    ]
    if i.missing_config_fields:
        rows.append(("missing config", ", ".join(i.missing_config_fields)))
    if i.HasField("last_error"):
        rows += _error_lines(i.last_error)
    rows += [
        ("safety brake", _breaker(i)),
        ("last sync", when(i.last_sync_time)),
        ("next sync", when(i.next_sync_time) if i.HasField("next_sync_time") else "not scheduled"),
        ("records", f"{i.record_count:,}"),
        ("interval", duration(i.sync_interval.ToTimedelta())),
        ("credentials", word(pb.CredentialsKind, i.credentials.kind) or "none"),
        ("allowed now", ", ".join(word(pb.Action, a) for a in i.allowed_actions) or "nothing"),
        ("revision", f"{i.revision} (etag {i.etag})"),
    ]
    return _pairs(rows)


def _pairs(rows: list[tuple[str, str]]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, show_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    return table


def test_view(test: api.TestConnectionResponse) -> RenderableType:
    """A connection test's result, with the error's meaning and solution when it failed."""
    took = duration(test.duration.ToTimedelta())
    if test.ok:
        return Text(f"connection ok ({took})", style="green")
    return Group(Text(f"connection failed ({took})", style="red"), _pairs(_error_lines(test.error)))


def run_line(run: pb.SyncRun) -> str:
    """A run's counts in words."""
    pages = f"{run.pages} page{'s' if run.pages != 1 else ''}"
    text = f"{pages}, {run.records_upserted:,} written, {run.records_deleted:,} deleted"
    return text + (", full resync" if run.full_resync else "")


def runs_table(runs: list[pb.SyncRun]) -> RenderableType:
    """Sync runs, newest first: id, outcome, trigger, start, counts."""
    if not runs:
        return Text("no sync runs", style="dim")
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("run id", no_wrap=True, min_width=36)
    table.add_column("outcome", overflow="fold")
    table.add_column("started / counts", overflow="fold")
    for run in runs:
        outcome = word(pb.SyncRunOutcome, run.outcome)
        if run.HasField("error"):
            outcome += f": {word(pb.ErrorCode, run.error.code)}"
        detail = f"{when(run.start_time)} {word(pb.SyncRunTrigger, run.trigger)}; {run_line(run)}"
        table.add_row(run.id, outcome, detail)
    return table


def records_table(records: list[pb.Record]) -> RenderableType:
    """Records: id, last update, data as compact JSON (folded, never cut)."""
    if not records:
        return Text("no records", style="dim")
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("record id", overflow="fold")
    table.add_column("updated", no_wrap=True)
    table.add_column("data", overflow="fold")
    for record in records:
        data = json.dumps(json_format.MessageToDict(record.data), separators=(",", ":"))
        updated = record.update_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
        table.add_row(record.id, updated, data)
    return table


def events_table(events: list[pb.IntegrationEvent]) -> RenderableType:
    """History, newest first."""
    if not events:
        return Text("no events", style="dim")
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("rev", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("change", overflow="fold")
    table.add_column("why", overflow="fold")
    for e in events:
        change = f"{e.trigger}: {word(pb.Status, e.from_status) or 'new'} -> "
        change += word(pb.Status, e.to_status) or "deleted"
        table.add_row(
            str(e.revision),
            e.occur_time.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S"),
            change,
            f"{e.reason} ({e.actor})" if e.actor else e.reason,
        )
    return table


def webhooks_table(items: list[wh.Webhook]) -> RenderableType:
    """Webhook endpoints: the full id (copied into the next command), whether it is on, failing
    or off and why, then the URL and the events it takes, folded to fit, never cut."""
    table = Table(box=None, pad_edge=False, show_edge=False)
    table.add_column("id", no_wrap=True, min_width=36)
    table.add_column("state", overflow="fold")
    table.add_column(Text("url [events]"), overflow="fold")
    for w in items:
        if not w.enabled:
            state = f"disabled: {w.disabled_reason}" if w.disabled_reason else "disabled"
        elif w.HasField("failing_since"):
            state = f"enabled, failing since {when(w.failing_since)}"
        else:
            state = "enabled"
        events = ", ".join(event_type(t) for t in w.event_types) or "all"
        table.add_row(w.id, Text(state), Text(f"{w.url} [{events}]"))
    return table


def webhook_secret_view(webhook: wh.Webhook, secret: str) -> RenderableType:
    """An endpoint and its new signing secret, which is shown only this once."""
    return Group(webhooks_table([webhook]), Text(f"secret (shown only now): {secret}"))


def event_type(value: int) -> str:
    """A webhook event type as the CLI takes it: WEBHOOK_EVENT_TYPE_STATUS_CHANGED ->
    "status_changed"."""
    return word(wh.WebhookEventType, value).replace(" ", "_")


def deliveries_table(deliveries: list[wh.WebhookDelivery]) -> RenderableType:
    """A webhook's deliveries, newest first: one line per attempt (ids in full, so they can be
    copied), then the reason of a failed one."""
    lines: list[RenderableType] = []
    for d in deliveries:
        head = f"{d.event_id}  {event_type(d.event_type)}  revision {d.revision}"
        head += f"  {word(wh.WebhookDeliveryState, d.state)}"
        if not d.attempts:
            lines.append(Text(head + "  (not attempted yet)"))
        for a in d.attempts:
            latency = f"{a.latency.ToTimedelta().total_seconds() * 1000:.0f} ms"
            status = f"HTTP {a.status_code}" if a.status_code else "no answer"
            lines.append(Text(f"{head}  attempt {a.attempt}: {status} in {latency}"))
            if a.error:
                lines.append(Text(f"    {a.error}", style="dim"))
    return Group(*lines)
