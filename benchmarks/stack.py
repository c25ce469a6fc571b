"""What the benchmarks run against, all started by the bench itself and all on 127.0.0.1: an
embedded PostgreSQL (never the machine's own server), the sandbox provider as a process, and
the service as a process (`python -m service`, as `make run` starts it)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import aiohttp
import asyncpg

from service.storage.database import EmbeddedPostgres
from service.storage.migrations import migrate

ROOT = Path(__file__).parents[1]
TEMPLATE = "bench_template"
#: The bench's own deadline for anything to start or finish (never a timing assumption).
DEADLINE = 300.0


def quiet_env() -> dict[str, str]:
    """The environment for child processes: no proxies (everything is on 127.0.0.1)."""
    proxies = {"http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "DATABASE_URL"}
    return {k: v for k, v in os.environ.items() if k not in proxies}


class Postgres:
    """An embedded PostgreSQL in the bench's directory, with a migrated template database."""

    def __init__(self, directory: Path) -> None:
        self.embedded = EmbeddedPostgres(directory)
        self.url = ""
        self.version = ""

    async def start(self) -> None:
        self.url = await self.embedded.start()
        conn = await asyncpg.connect(self.url)
        try:
            self.version = str(await conn.fetchval("SHOW server_version"))
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.database_url(TEMPLATE))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    async def database(self, name: str) -> str:
        """A fresh migrated database; returns its URL."""
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        finally:
            await conn.close()
        return self.database_url(name)

    async def stop(self) -> None:
        await self.embedded.stop()


class Child:
    """A child process whose output goes to a file (never a pipe that could fill up)."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def spawn(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: bool = False
    ) -> None:
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**quiet_env(), **(env or {})},
                cwd=ROOT,
            )

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    async def wait_for_line(self, predicate: Any, what: str) -> str:
        """The first output line for which `predicate(line)` holds (bounded by DEADLINE)."""
        deadline = time.monotonic() + DEADLINE
        while time.monotonic() < deadline:
            for line in self.lines():
                if predicate(line):
                    return line
            if self.proc is not None and self.proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = "\n".join(self.lines()[-20:])
        raise RuntimeError(f"{self.name}: no {what}; its output ends with:\n{tail}")

    async def tell(self, line: str) -> None:
        """Write a line to the child's standard input (spawned with `stdin=True`)."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), DEADLINE)


class SandboxProcess(Child):
    """`python -m sandbox --empty` on a free port, driven through its control API."""

    def __init__(self, log_dir: Path) -> None:
        super().__init__("sandbox", log_dir)
        self.url = ""
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        await self.spawn("-m", "sandbox", "--empty", "--port", "0")
        line = await self.wait_for_line(lambda s: "listening on" in s, "listening line")
        self.url = line.rsplit(" ", 1)[1].strip()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=DEADLINE))

    async def control(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        assert self._session is not None
        async with self._session.request(
            method, f"{self.url}/_control{path}", json=body
        ) as response:
            answer: dict[str, Any] = await response.json()
            if response.status != 200:
                raise RuntimeError(f"sandbox {method} {path}: {response.status} {answer}")
            return answer

    async def requests_total(self) -> int:
        """How many provider requests the sandbox has answered so far."""
        answer = await self.control("GET", "/requests?resource=-none-")
        return int(answer["total"])

    async def stop(self) -> int:
        if self._session is not None:
            await self._session.close()
        return await super().stop()


class ServiceProcess(Child):
    """`python -m service` on a free port against one of the bench's databases."""

    def __init__(self, name: str, log_dir: Path, database_url: str, *args: str) -> None:
        super().__init__(name, log_dir)
        self.database_url = database_url
        self.args = args
        self.port = 0
        self.pids: list[int] = []

    async def start(self) -> None:
        key = base64.b64encode(os.urandom(32)).decode()
        await self.spawn(
            "-m",
            "service",
            "--listen",
            "127.0.0.1:0",
            "--callback-listen",
            "off",
            "--data-dir",
            str(self.log_path.parent / self.name),
            *self.args,
            env={
                "DATABASE_URL": self.database_url,
                "INTEGRATIONS_ENCRYPTION_KEYS": f"bench:{key}",
                "INTEGRATIONS_LOG_FORMAT": "json",
                # Like `make run`: without API keys, unauthenticated by explicit choice.
                "INTEGRATIONS_ALLOW_UNAUTHENTICATED": "true",
            },
        )
        ready = await self.wait_for_line(_event("ready"), "ready line")
        self.port = int(json.loads(ready)["port"])
        workers = [json.loads(x) for x in self.lines() if _event("worker_ready")(x)]
        self.pids = [int(w["pid"]) for w in workers] or [self.pid]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User and system CPU time of every server process so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total

    def rss_bytes(self) -> int:
        return sum(rss_bytes(pid) for pid in self.pids)


def rss_bytes(pid: int) -> int:
    """Resident memory of a process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _event(name: str) -> Any:
    def matches(line: str) -> bool:
        if not line.startswith("{"):
            return False
        try:
            return bool(json.loads(line).get("event") == name)
        except ValueError:
            return False

    return matches


async def clone_integrations(
    conn: asyncpg.Connection, template: UUID, count: int, overrides: Mapping[str, str]
) -> None:
    """`count` copies of one integration row (new ids, `g` numbering them 1…count), with
    some columns given as SQL expressions over the template row `i` and `g`. Every other column
    is copied, so a copy is in whatever state the real code put the template in."""
    columns = [
        r["column_name"]
        for r in await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'integrations' ORDER BY ordinal_position"
        )
    ]
    values = {
        "id": "gen_random_uuid()",
        "display_name": "i.display_name || ' ' || g",
        "created_at": "i.created_at - make_interval(secs => g)",
        **overrides,
    }
    select = ", ".join(values.get(c, f"i.{c}") for c in columns)
    await conn.execute(
        f"INSERT INTO integrations ({', '.join(columns)}) "
        f"SELECT {select} FROM integrations i, generate_series(1, $2) g WHERE i.id = $1",
        template,
        count,
    )
