"""The service as an operating-system process, started the way `make run` starts it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path


class ServiceProcess:
    """`python -m service` in a subprocess; learns its port from the JSON "ready" log line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        # Like `make run` on a fresh machine: no DATABASE_URL unless the test gives one.
        inherited = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        # Like `make run` too: without API keys, unauthenticated by explicit choice.
        self.env = {
            **inherited,
            "INTEGRATIONS_LOG_FORMAT": "json",
            **({} if "--api-keys" in args else {"INTEGRATIONS_ALLOW_UNAUTHENTICATED": "true"}),
            **(env or {}),
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.log_lines: list[dict[str, object]] = []
        self._drain: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 60) -> int:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "service",
            "--listen",
            "127.0.0.1:0",
            *self.args,
            env=self.env,
            stderr=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            cwd=Path(__file__).parents[2],
        )
        self.port = await asyncio.wait_for(self._until_ready(), timeout)
        self._drain = asyncio.create_task(self._read_rest())
        return self.port

    async def _until_ready(self) -> int:
        assert self.proc is not None and self.proc.stderr is not None
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                raise RuntimeError(f"service exited before it was ready: {self.log_lines}")
            entry = self._parse(line)
            if entry.get("event") == "ready":
                return int(str(entry["port"]))

    async def _read_rest(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self._parse(line)

    def _parse(self, line: bytes) -> dict[str, object]:
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        entry: dict[str, object] = (
            parsed if isinstance(parsed, dict) else {"raw": line.decode(errors="replace").rstrip()}
        )
        self.log_lines.append(entry)
        return entry

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` and wait for the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        if self._drain is not None:
            await self._drain
        return code

    def events(self, name: str) -> Sequence[dict[str, object]]:
        return [e for e in self.log_lines if e.get("event") == name]
