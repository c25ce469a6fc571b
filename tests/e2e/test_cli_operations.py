"""`integrationsctl configure`, `reauthorize` and `runs` paging against a running service, and
the exit codes a script relies on when an id is unknown or a request is malformed."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlsplit

import pytest
from google.protobuf import json_format
from integrations.v1 import integration_pb2 as pb

from sandbox import Sandbox
from service.api.server import Server
from tests.e2e.test_cli import ctl
from tests.support.oauth import CLIENT_ID, calendar_config, running_sandbox
from tests.support.rpc import Stub
from tests.support.syncing import CALENDAR, SANDBOX_DEPLOYMENT, TOKEN, bearer, create, seed_calendar

pytestmark = [pytest.mark.settings(**SANDBOX_DEPLOYMENT), pytest.mark.sign_in_at_sandbox]

UNKNOWN = "5f0c6a53-5a0e-4bb5-8f57-7d2f4b0f3c11"


@pytest.fixture
async def sb() -> AsyncIterator[Sandbox]:
    async with running_sandbox() as sandbox:
        seed_calendar(sandbox.state, events=3)
        yield sandbox


def config_of(sb: Sandbox) -> pb.ConnectorConfig:
    """The calendar, its OAuth endpoints at the sandbox too (so a sign-in can start)."""
    return pb.ConnectorConfig(
        google_calendar=pb.GoogleCalendarConfig(**calendar_config(sb, CALENDAR))
    )


@pytest.fixture
async def calendar(stub: Stub, sb: Sandbox) -> str:
    return (await create(stub, "google_calendar", config_of(sb), bearer())).id


async def test_configure_completes_a_draft_and_tests_it_at_once(
    server: Server, sb: Sandbox
) -> None:
    code, out, _ = await ctl(server, "--json", "create", "Draft", "google_calendar")
    assert code == 0
    draft = json.loads(out)
    config = json_format.MessageToJson(config_of(sb), indent=None)

    code, out, err = await ctl(
        server,
        "configure", draft["id"],
        "--name", "Team calendar",
        "--config", config,
        "--credentials", json.dumps({"bearer_token": TOKEN}),
        "--interval", "600",
    )  # fmt: skip
    assert code == 0, err
    assert draft["id"] in out and "Team calendar" in out
    assert "active" in out and "connection ok" in out
    assert re.search(r"interval\s+10m\b", out)
    assert TOKEN not in out  # credentials are write-only

    # A change against a stale etag is refused, saying why and what to do.
    code, _, err = await ctl(
        server, "configure", draft["id"], "--name", "x", "--etag", draft["etag"]
    )
    assert code == 1
    assert "FAILED_PRECONDITION" in err or "ABORTED" in err
    assert "solution:" in err
    code, _, err = await ctl(server, "configure", draft["id"], "--config", "{nope")
    assert code == 2 and "--config is not valid JSON" in err


async def test_configure_whose_test_fails_exits_6_and_keeps_the_change(
    server: Server, sb: Sandbox, calendar: str
) -> None:
    missing = config_of(sb)
    missing.google_calendar.calendar_id = "no-such-calendar"
    code, out, _ = await ctl(
        server, "configure", calendar, "--name", "Renamed",
        "--config", json_format.MessageToJson(missing, indent=None),
    )  # fmt: skip
    assert code == 6, out  # a script sees the connection does not work
    assert "connection failed" in out and "solution" in out
    code, out, err = await ctl(server, "--json", "get", calendar)
    assert code == 0, err
    assert json.loads(out)["displayName"] == "Renamed"


async def test_reauthorize_with_credentials_or_a_sign_in_url(
    server: Server, sb: Sandbox, calendar: str
) -> None:
    code, out, err = await ctl(
        server, "reauthorize", calendar, "--credentials", json.dumps({"bearer_token": TOKEN})
    )
    assert code == 0, err
    assert "connection ok" in out and "active" in out
    # Credentials that fail their test: exit code 6, and the error explained.
    code, out, _ = await ctl(
        server, "reauthorize", calendar, "--credentials", '{"bearer_token": "revoked"}'
    )
    assert code == 6
    assert "connection failed" in out and "solution" in out

    # Without credentials: an OAuth sign-in at the provider, its URL whole on one line.
    code, out, err = await ctl(server, "reauthorize", calendar)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Open this URL in a browser to sign in:"
    url = urlsplit(lines[1])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{sb.url}/oauth2/auth"
    query = parse_qs(url.query)
    assert query["client_id"] == [CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and query["state"]


async def test_runs_are_paged(server: Server, sb: Sandbox, calendar: str) -> None:
    for _ in range(3):
        code, _, _ = await ctl(server, "sync", calendar, "--wait")
        assert code == 0
    code, out, _ = await ctl(server, "--json", "runs", calendar)
    newest_first = [run["id"] for run in json.loads(out)]
    assert len(newest_first) == 3

    seen: list[str] = []
    token = ""
    for _ in range(3):
        code, out, _ = await ctl(
            server,
            "runs",
            calendar,
            "--page-size",
            "2",
            *(["--page-token", token] if token else []),
        )
        assert code == 0
        seen += [run for run in newest_first if run in out]
        more = re.search(r"more: --page-token (\S+)", out)
        if more is None:
            break
        token = more.group(1)
    assert seen == newest_first  # every run once, in order, over two pages


async def test_exit_codes_for_unknown_ids_and_bad_requests(server: Server, calendar: str) -> None:
    for command in (["get", UNKNOWN], ["runs", UNKNOWN], ["configure", UNKNOWN, "--name", "x"]):
        code, _, err = await ctl(server, *command)
        assert code == 3, command
        assert "NOT_FOUND" in err and "solution: check the id" in err
    code, _, err = await ctl(server, "webhooks", "delete", UNKNOWN)
    assert code == 3 and "NOT_FOUND" in err

    code, _, err = await ctl(server, "get", "not-an-id")
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "id:" in err
    code, _, err = await ctl(server, "runs", calendar, "--page-token", "forged")
    assert code == 1
    assert "INVALID_ARGUMENT" in err and "page_token" in err
    assert "Traceback" not in err
