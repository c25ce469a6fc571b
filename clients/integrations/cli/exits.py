"""How an `integrationsctl` verb ends: the documented exit codes, and a failed call reported
for people (message, reason, details, what to do) or as JSON."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, NoReturn, ParamSpec

import grpc
import typer
from rich.text import Text

from integrations import views
from integrations.cli.options import Options
from integrations.cli.output import errors
from integrations.client import IntegrationsError

P = ParamSpec("P")


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


def usage(message: str) -> NoReturn:
    """Refuse bad options or arguments: the message on stderr, exit code USAGE."""
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


def async_command(command: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
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
