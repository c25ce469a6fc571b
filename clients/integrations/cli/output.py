"""How `integrationsctl` prints an answer: a view in words for people, or with `--json` the
API's JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console, Group, RenderableType

from integrations import views
from integrations.cli.options import Options
from integrations.v1 import integration_pb2 as pb
from integrations.v1 import service_pb2 as api

console = Console()
errors = Console(stderr=True)


def show(message: Message, view: Callable[[], RenderableType]) -> None:
    """One answer: its view, or its JSON."""
    if Options.as_json:
        console.print_json(json_format.MessageToJson(message))
    else:
        console.print(view())


def show_list(items: list[Any], view: RenderableType, next_token: str = "") -> None:
    """A list (one page of it when `next_token` says there is more): its table, or its JSON."""
    if Options.as_json:
        document: Any = [json_format.MessageToDict(i) for i in items]
        if next_token:
            document = {"items": document, "next_page_token": next_token}
        console.print_json(json.dumps(document))
        return
    console.print(view)
    if next_token:
        console.print(f"more: --page-token {next_token}", style="dim", soft_wrap=True)


def with_test(
    integration: pb.Integration, answer: api.ConfigureResponse | api.ReauthorizeResponse
) -> RenderableType:
    """The integration, and the connection test the call ran when it ran one."""
    if answer.HasField("test"):
        return Group(views.integration_view(integration), views.test_view(answer.test))
    return views.integration_view(integration)
