"""stub"""

from __future__ import annotations

from benchmarks.bench import Bench
from benchmarks.report import Section


async def run(bench: Bench) -> list[Section]:
    return []
