"""`python -m benchmarks`: every benchmark beside its baseline, then the report.

`make bench` runs the full sizes and writes BENCHMARKS.md; `--smoke` runs tiny sizes (what
`make test` does, so the benchmarks never rot); `--only a,c` picks benchmarks. A missed
target is printed as MISSED and never changes the exit code: targets are goals to work
towards, not tests.
"""

from __future__ import annotations

import os

# The bench starts processes (h2load, servers) while gRPC is in use; it never forks itself.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchmarks import fanout, fleet, outage, pushing, reads, stalls, syncing
from benchmarks.bench import FULL, SMOKE, Bench
from benchmarks.h2load import ensure_h2load
from benchmarks.machine import CpuTimes, Machine
from benchmarks.report import Report, Section
from benchmarks.stack import Postgres, SandboxProcess
from service import logs

Benchmark = Callable[[Bench], Awaitable[list[Section]]]

BENCHMARKS: dict[str, Benchmark] = {
    "a": reads.run,
    "b": syncing.run,
    "c": fleet.run,
    "d": fanout.run,
    "e": stalls.run,
    "f": outage.run,
    "g": pushing.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the code runs")
    parser.add_argument("--out", type=Path, help="write the report (markdown) here")
    parser.add_argument("--only", default="", help="comma-separated benchmarks, e.g. a,c")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> Report:
    ensure_h2load()
    sizes = SMOKE if args.smoke else FULL
    chosen = [k.strip() for k in args.only.split(",") if k.strip()] or list(BENCHMARKS)
    unknown = set(chosen) - set(BENCHMARKS)
    if unknown:
        raise SystemExit(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    work = Path(tempfile.mkdtemp(prefix="integrations-bench-"))
    started = time.monotonic()
    pg = Postgres(work / "pg")
    sandbox = SandboxProcess(work)
    await asyncio.gather(pg.start(), sandbox.start())
    report = Report(Machine.describe(pg.version), sizes.name)
    cpu_before = CpuTimes.now()
    bench = Bench(sizes, pg, sandbox, work)
    try:
        if args.smoke:
            # Tiny sizes measure nothing: run them all at once, to keep `make test` short.
            for sections in await asyncio.gather(*(BENCHMARKS[key](bench) for key in chosen)):
                report.add(sections)
            await bench.stop()
        for key in [] if args.smoke else chosen:
            print(f"benchmark {key} ...", flush=True)
            try:
                report.add(await BENCHMARKS[key](bench))
            except Exception as exc:  # the others' figures are still worth writing
                traceback.print_exc()
                report.add([Section(key, "did not finish", "", notes=[f"{exc!r}"[:500]])])
                report.failed = True
            finally:
                await bench.stop()  # its processes go, so the next one has the machine
    finally:
        await bench.stop()
        await sandbox.stop()
        await pg.stop()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    report.seconds = time.monotonic() - started
    stolen = CpuTimes.now().stolen_share(cpu_before)
    if stolen is not None:
        report.notes.append(
            f"CPU time stolen by the hypervisor during the run (other guests on the host): "
            f"{100 * stolen:.1f} %"
        )
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logs.configure("console", "warning")
    report = asyncio.run(run(args))
    text = report.markdown()
    print(text)
    if args.out is not None:
        args.out.write_text(text)
        print(f"written to {args.out}")
    if report.failed:
        sys.exit("some benchmarks did not finish (see above)")


if __name__ == "__main__":
    main()
