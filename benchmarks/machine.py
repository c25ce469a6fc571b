"""What machine the figures come from: CPU, cores, memory, load, and the software versions."""

from __future__ import annotations

import os
import platform
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    """A description of the machine, for the report's header."""

    cpu: str
    cores: int
    memory_gib: float
    python: str
    postgres: str
    h2load: str
    system: str
    load_before: tuple[float, float, float]
    #: Milliseconds one core took for a fixed pure-Python loop when the run started (the best
    #: of three): the same machine can be several times slower on another day (a host shared
    #: with others), which the load average inside it does not show.
    reference_ms: float

    @classmethod
    def describe(cls, postgres: str) -> Machine:
        return cls(
            cpu=_cpu_model(),
            cores=os.cpu_count() or 1,
            memory_gib=_memory_gib(),
            python=platform.python_version(),
            postgres=postgres,
            h2load=_h2load_version(),
            system=f"{platform.system()} {platform.release()}",
            load_before=os.getloadavg(),
            reference_ms=reference_loop_ms(),
        )

    @property
    def busy(self) -> bool:
        """The machine had been busy just before the run (load above a third of it): other
        work, or the bench's own start-up, which the one-minute average still holds."""
        return self.load_before[0] > self.cores / 3

    def lines(self) -> list[str]:
        load = ", ".join(f"{x:.2f}" for x in self.load_before)
        return [
            f"CPU: {self.cpu}, {self.cores} cores; memory {self.memory_gib:.1f} GiB",
            f"Python {self.python}; PostgreSQL {self.postgres}; {self.h2load}; {self.system}",
            f"Load average when the run started: {load}"
            + (" (busy just before: other work, or the bench's own start-up)" if self.busy else ""),
            f"Speed of one core when the run started: {REFERENCE_LOOP:,} additions in a "
            f"pure-Python loop took {self.reference_ms:.0f} ms",
        ]


#: The reference loop's length: long enough to time, short enough not to matter (~0.1 s here).
REFERENCE_LOOP = 2_000_000


def reference_loop_ms() -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(REFERENCE_LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return best * 1000


@dataclass(frozen=True)
class CpuTimes:
    """The machine's CPU time so far (/proc/stat, in clock ticks): all of it, and the part the
    hypervisor gave to other guests while this one wanted to run (steal)."""

    total: int
    steal: int

    @classmethod
    def now(cls) -> CpuTimes:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return cls(0, 0)
        ticks = [int(x) for x in fields[:8]]
        return cls(sum(ticks), ticks[7] if len(ticks) > 7 else 0)

    def stolen_share(self, since: CpuTimes) -> float | None:
        """The share of the CPU time since `since` that was stolen (None without /proc/stat)."""
        total = self.total - since.total
        return (self.steal - since.steal) / total if total > 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def _h2load_version() -> str:
    try:
        out = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "h2load missing"
    return out.stdout.split("\n", 1)[0].strip()
