"""Load from h2load (nghttp2's HTTP/2 load generator, written in C), sending pre-encoded gRPC
frames: a Python client would be the bottleneck long before a server is."""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmarks.stats import percentile


@dataclass(frozen=True)
class Load:
    """How hard to push: connections, streams in flight per connection, and for how long.
    With `rps`, each connection sends at that rate instead of as fast as it can."""

    connections: int = 8
    streams: int = 16
    seconds: float = 5.0
    warm_up: float = 1.0
    rps: int | None = None


@dataclass(frozen=True)
class LoadResult:
    """What one h2load run measured."""

    requests_per_s: float
    p50_ms: float
    p99_ms: float
    succeeded: int
    failed: int
    data_bytes_per_request: float


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: not compressed, 4-byte big-endian length, the bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


def ensure_h2load() -> str:
    path = shutil.which("h2load")
    if path is None:
        raise RuntimeError("h2load is missing: apt-get install nghttp2-client (make bench does)")
    return path


async def run(target: str, method: str, body: Path, load: Load, log: Path) -> LoadResult:
    """POST `body` (a gRPC frame) to `method` at `target` (host:port) under `load`."""
    args = [
        ensure_h2load(),
        f"http://{target}{method}",
        "-d",
        str(body),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "-c",
        str(load.connections),
        "-m",
        str(load.streams),
        "-t",
        "1",
        "-D",
        f"{round(load.seconds * 1000)}ms",
        f"--warm-up-time={round(load.warm_up * 1000)}ms",
        f"--log-file={log}",
    ]
    if load.rps is not None:
        args.append(f"--rps={load.rps}")
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"h2load failed ({proc.returncode}):\n{text}")
    return _parse(text, log)


def _parse(text: str, log: Path) -> LoadResult:
    rate = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text)
    counts = re.search(r"requests: .* (\d+) succeeded, (\d+) failed", text)
    data = re.search(r"traffic: .*?, .*?\((\d+)\) data", text)
    if rate is None or counts is None or data is None:
        raise RuntimeError(f"cannot read h2load's summary:\n{text}")
    succeeded, failed = int(counts.group(1)), int(counts.group(2))
    # The log: one request a line, "start time (µs) <tab> status <tab> elapsed (µs)".
    elapsed = sorted(
        int(fields[2]) / 1000
        for fields in (line.split("\t") for line in log.read_text().splitlines())
        if len(fields) >= 3 and fields[1] == "200"
    )
    if not elapsed:  # nothing answered in the whole window (a stalled server)
        return LoadResult(0.0, float("inf"), float("inf"), 0, failed, 0.0)
    return LoadResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=percentile(elapsed, 50),
        p99_ms=percentile(elapsed, 99),
        succeeded=succeeded,
        failed=failed,
        data_bytes_per_request=int(data.group(1)) / max(1, succeeded),
    )
