"""`make bench` in smoke mode: every benchmark and its baseline runs at tiny sizes, and the
report is written (to a temporary file, never the committed BENCHMARKS.md). The figures mean
nothing at these sizes, and a missed target never fails: this only keeps the benchmarks from
rotting."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


async def test_every_benchmark_runs_beside_its_baseline(tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks",
        "--smoke",
        "--out",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=ROOT,
    )
    output, _ = await asyncio.wait_for(proc.communicate(), timeout=240)
    assert proc.returncode == 0, output.decode(errors="replace")[-4000:]
    report = out.read_text()
    for key in ("a", "b", "c", "d", "e", "f", "g", "workers"):
        assert f"\n## {key}. " in report, f"section {key} is missing"
    assert "CPU:" in report and "PostgreSQL" in report and "h2load nghttp2" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and "|---" not in line]
    verdicts = [row.rstrip(" |").rsplit("|", 1)[1].strip() for row in rows]
    assert {"met", "MISSED"} & set(verdicts), "targets are held against the figures"
    assert report in output.decode(errors="replace"), "the report is printed too"
