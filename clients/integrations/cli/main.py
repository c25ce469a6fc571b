"""The `integrationsctl` app: its global options (target, API key, TLS, `--json`), and the
arguments every verb parses the same way (statuses, JSON messages)."""

from __future__ import annotations

from typing import Any

import typer
from google.protobuf import json_format
from google.protobuf.message import Message

from integrations.cli.exits import usage
from integrations.cli.options import Options
from integrations.client import tls_credentials
from integrations.v1 import integration_pb2 as pb

app = typer.Typer(help="Operate the integrations service.", no_args_is_help=True)


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
            usage(f"TLS files: {exc}")


def statuses(names: list[str]) -> list[pb.Status.ValueType]:
    """`--status` values (draft, active, error, ...) as the API's enum values."""
    try:
        return [pb.Status.Value(f"STATUS_{s.upper()}") for s in names]
    except ValueError:
        usage(
            f"unknown status in {names}: use draft, configure, testing, active, paused, "
            "error or disconnected"
        )


def parse_json(text: str, message: Message, what: str) -> Any:
    """`text` parsed into `message`; invalid JSON is a usage error naming the option `what`."""
    try:
        return json_format.Parse(text, message)
    except json_format.ParseError as exc:
        usage(f"{what} is not valid JSON for {message.DESCRIPTOR.name}: {exc}")
