"""What machine the figures come from: CPU, cores, memory, load, and the software versions."""

from __future__ import annotations

import os
import platform
import subprocess
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
        )

    @property
    def busy(self) -> bool:
        """Others were using the machine when the run started (load above a third of it)."""
        return self.load_before[0] > self.cores / 3

    def lines(self) -> list[str]:
        load = ", ".join(f"{x:.2f}" for x in self.load_before)
        return [
            f"CPU: {self.cpu}, {self.cores} cores; memory {self.memory_gib:.1f} GiB",
            f"Python {self.python}; PostgreSQL {self.postgres}; {self.h2load}; {self.system}",
            f"Load average when the run started: {load}"
            + (" (a busy machine: others were running)" if self.busy else ""),
        ]


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
