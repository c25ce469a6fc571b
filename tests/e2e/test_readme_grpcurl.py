"""The README's examples, run as an operator would: every grpcurl command, in order, with the
real grpcurl binary and nothing but reflection, against the service as a process and the
sandbox (its curl commands too). Then the Grafana dashboard and the alert rules are checked
against what that service really exports, and the rules' own unit tests run in promtool.

Only `localhost:50051`, the sandbox's `127.0.0.1:8099`, `<id>` (the integration created last)
and etags (the current ones) are substituted; mutual-TLS examples run in test_tls.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import grpc
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from sandbox import Sandbox
from sandbox.demo import seed
from service.observability import metrics
from tests.support import postgres
from tests.support.process import ServiceProcess

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
GRPCURL = str(Path(sys.executable).parent / "grpcurl")
LOOPBACK = re.compile(r"^https?://(127\.0\.0\.1|localhost)(:\d+)?(/|$)")


def commands() -> list[str]:
    """Every grpcurl and curl command in the README's sh blocks, continuation lines joined."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", README, re.S):
        text = re.sub(r"\\\n\s*", " ", block)
        current = ""
        for line in text.splitlines():
            stripped = line.strip()
            if current:
                current += " " + stripped
            elif stripped.startswith(("grpcurl ", "curl ")):
                current = stripped
            if current and _balanced(current):
                found.append(current.split(" #")[0] if current.startswith("curl") else current)
                current = ""
    return found


def _balanced(command: str) -> bool:
    try:
        shlex.split(command)
    except ValueError:
        return False  # a quoted JSON document continues on the next line
    return True


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox() as sb:
        seed(sb.state)
        yield sb


@pytest.fixture(scope="module")
async def service(admin_database_url: str, sandbox: Sandbox) -> AsyncIterator[ServiceProcess]:
    url = await postgres.create_database(admin_database_url)
    process = ServiceProcess(
        "--allow-private-networks",
        "true",
        "--ops-listen",
        "127.0.0.1:0",
        "--watch-heartbeat-interval",
        "1s",
        "--google-client-id",
        "sandbox-client",
        "--oauth-trusted-origins",
        sandbox.url,
        env={"DATABASE_URL": url, "INTEGRATIONS_GOOGLE_CLIENT_SECRET": "sandbox-secret"},
    )
    await process.start()
    yield process
    await process.stop()
    await postgres.drop_database(admin_database_url, url)


#: grpcurl exits with 64 plus the gRPC status code: ABORTED is 10.
_GRPCURL_ABORTED = 64 + grpc.StatusCode.ABORTED.value[0]


class Operator:
    """Runs README commands against the test's service and sandbox."""

    def __init__(self, service: ServiceProcess, sandbox: Sandbox) -> None:
        self.service = service
        self.sandbox = sandbox
        self.last_id = ""
        self.revision = 0
        #: The webhook created last, and the feed cursor read last (for `<webhook id>`,
        #: `<cursor>` in the examples).
        self.webhook_id = ""
        self.cursor = ""

    def _target(self) -> str:
        return f"127.0.0.1:{self.service.port}"

    async def run(self, command: str) -> str:
        argv = shlex.split(command)
        argv = [a.replace("localhost:8099", self.sandbox.url.removeprefix("http://")) for a in argv]
        if argv[0] == "curl":
            return await self._exec(["curl", "-sS", "-f", *argv[1:]])
        argv[0] = GRPCURL
        argv = [self._target() if a == "localhost:50051" else a for a in argv]
        if argv[-1].endswith("/WatchStatus"):
            if "-d" in argv:
                at = argv.index("-d") + 1
                argv[at] = await self._payload(argv[at])
            return await self._stream(argv)
        out = await self._with_current_etag(argv)
        if argv[-1].endswith("/Create"):
            self.last_id = json.loads(out)["integration"]["id"]
        if argv[-1].endswith("/CreateWebhook"):
            self.webhook_id = json.loads(out)["webhook"]["id"]
        if argv[-1].endswith(("/ListRecords", "/ListRecordChanges")):
            self.cursor = json.loads(out).get("cursor", self.cursor)
        return out

    async def _with_current_etag(self, argv: list[str]) -> str:
        """Run the command with its payload filled in. An etag is read just before; when the
        service's own background work changed the integration in between, the call answers
        ABORTED and is retried with the new etag, as the README tells callers to."""
        if "-d" not in argv:
            return await self._exec(argv)
        at = argv.index("-d") + 1
        template = argv[at]
        for _ in range(3):
            argv[at] = await self._payload(template)
            out, code = await self._exec_status(argv)
            if code != _GRPCURL_ABORTED or '"etag"' not in template:
                break
        assert code == 0, f"{shlex.join(argv)}\n{out}"
        return out

    async def _payload(self, text: str) -> str:
        text = text.replace("http://127.0.0.1:8099", self.sandbox.url)
        # A webhook receiver of the example's: the sandbox (loopback; it answers 404, which is
        # only a failed delivery to retry).
        text = text.replace("https://dashboard.example.com", self.sandbox.url)
        document = json.loads(text)
        if document.get("id") == "<id>":
            document["id"] = self.last_id
        if document.get("id") == "<webhook id>":
            document["id"] = self.webhook_id
        if document.get("after") == "<cursor>":
            document["after"] = self.cursor
        if "etag" in document:
            current = json.loads(await self._exec(_get(self._target(), document["id"])))
            document["etag"] = current["integration"]["etag"]
        if "resume_after_revision" in document:
            document["resume_after_revision"] = self.revision
        for url in re.findall(r'"(https?://[^"]+)"', json.dumps(document)):
            assert LOOPBACK.match(url) or "return_url" in text, f"not loopback: {url}"
        return json.dumps(document)

    async def _exec(self, argv: list[str]) -> str:
        out, code = await self._exec_status(argv)
        assert code == 0, f"{shlex.join(argv)}\n{out}"
        return out

    async def _exec_status(self, argv: list[str]) -> tuple[str, int]:
        """(its output (stderr first when it failed), its exit code)."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)  # a bound for the test only
        code = proc.returncode
        assert code is not None
        return (out.decode() if code == 0 else err.decode() + out.decode()), code

    def _warnings(self) -> list[dict[str, object]]:
        lines = self.service.log_lines
        return [e for e in lines if e.get("level") in ("warning", "error")][-10:]

    async def _stream(self, argv: list[str]) -> str:
        """A WatchStatus example: read until the stream is live, then stop it."""
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        seen = ""
        try:
            async with asyncio.timeout(30):  # a bound for the test only
                while not re.search(r'"(snapshot_complete|heartbeat|change)"', seen):
                    line = await proc.stdout.readline()
                    if not line:  # ended: say why (grpcurl's error, the service's warnings)
                        err = (await proc.stderr.read()).decode() if proc.stderr else ""
                        raise AssertionError(
                            f"{shlex.join(argv)} ended: {seen!r}\n{err}\n{self._warnings()}"
                        )
                    seen += line.decode()
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()
        revisions = [int(r) for r in re.findall(r'"revision": "(\d+)"', seen)]
        self.revision = max(revisions, default=self.revision)
        return seen


def _get(target: str, ident: str) -> list[str]:
    return [
        GRPCURL,
        "-plaintext",
        "-d",
        json.dumps({"id": ident}),
        target,
        "integrations.v1.IntegrationService/Get",
    ]


async def test_every_readme_example_runs(service: ServiceProcess, sandbox: Sandbox) -> None:
    examples = [c for c in commands() if "-cacert" not in c]
    assert sum(c.startswith("grpcurl") for c in examples) >= 20
    operator = Operator(service, sandbox)
    for command in examples:
        out = await operator.run(command)
        if command.endswith(" list"):
            assert "grpc.reflection.v1.ServerReflection" in out
        if command.endswith("/Sync"):
            assert "SYNC_RUN_OUTCOME_SUCCEEDED" in out


async def scrape(service: ServiceProcess) -> tuple[set[str], str]:
    """Names of every metric family and sample the running service exports."""
    [event] = service.events("ops_serving")
    async with aiohttp.ClientSession() as http, http.get(f"{event['url']}/metrics") as resp:
        text = await resp.text()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(f"{family.name}{suffix}" for suffix in ("_total", "_bucket", "_sum", "_count"))
    return names, text


_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate",
    "histogram_quantile", "time", "and", "or", "unless", "on", "ignoring", "le", "bool",
    "humanizeDuration", "humanizePercentage", "offset",
}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, grouping and functions
    left out)."""
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)  # grouping labels
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in _PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", w)}


async def test_the_dashboard_and_alerts_read_metrics_the_service_exports(
    service: ServiceProcess,
) -> None:
    exported, _ = await scrape(service)
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (ROOT / "deploy" / "prometheus-rules.yml").read_text()
    queries += re.findall(r"expr: \|?\s*\n?((?:.+\n)+?)\s+for:", rules)
    assert len(queries) >= 25
    for query in queries:
        for name in metric_names(query):
            assert name in exported, f"{name!r} (in {query.strip()!r}) is not exported"
    # The README lists every metric the service exports under its own names.
    ours = {n for n in exported if n.startswith(("integrations_", "grpc_server_"))}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in ours}
    for family in families:
        assert f"`{family}" in README, f"the README's metrics table lacks {family}"


#: Labels every scraped series gets from Prometheus itself, and histograms' bucket label.
_TARGET_LABELS = {"instance", "job", "le"}


def test_the_dashboard_and_alerts_group_and_filter_by_labels_the_metrics_have() -> None:
    assert metrics.GRPC_HANDLED  # the service's metrics are registered in this process
    labels: dict[str, set[str]] = {}
    for collector in list(REGISTRY._collector_to_names):
        names = getattr(collector, "_labelnames", None)
        if names is not None:
            labels[collector._name] = set(names)  # type: ignore[attr-defined]
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = (ROOT / "deploy" / "prometheus-rules.yml").read_text()
    queries += re.findall(r"expr: \|?\s*\n?((?:.+\n)+?)\s+for:", rules)
    for query in queries:
        families = {re.sub(r"_(total|bucket|sum|count)$", "", n) for n in metric_names(query)}
        known = set().union(*(labels.get(f, set()) for f in families)) | _TARGET_LABELS
        used = {
            name
            for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", query)
            for name in re.findall(r"\w+", group)
        }
        used |= {
            name
            for matchers in re.findall(r"\{([^}]*)\}", query)
            for name in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers)
        }
        assert used <= known, f"{query.strip()!r} uses labels {used - known} its metrics lack"


def test_alert_rules_pass_their_promtool_unit_tests() -> None:
    promtool = os.environ.get("PROMTOOL") or str(ROOT / ".tools/prometheus/usr/bin/promtool")
    assert Path(promtool).exists(), "no promtool: run the tests with `make test` (it fetches it)"
    done = subprocess.run(
        [promtool, "test", "rules", "prometheus-rules.test.yml"],
        cwd=ROOT / "deploy",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
