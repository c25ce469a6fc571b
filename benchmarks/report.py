"""Figures, their targets, and the report: a table per benchmark, printed and written to
BENCHMARKS.md. A missed target is marked MISSED; it never fails anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from benchmarks.machine import Machine


class Goal(Enum):
    """How a figure is held against its target value."""

    RATIO_AT_LEAST = "≥ {v:g}× the baseline"
    RATIO_AT_MOST = "≤ {v:g}× the baseline"
    AT_LEAST = "≥ {v:g} {unit}"
    AT_MOST = "≤ {v:g} {unit}"
    BELOW = "< {v:g} {unit}"
    TRUE = "yes"


@dataclass(frozen=True)
class Target:
    """What the issue asks of a figure."""

    goal: Goal
    value: float = 0.0

    def text(self, unit: str) -> str:
        return self.goal.value.format(v=self.value, unit=unit)

    def met(self, subject: float, baseline: float | None) -> bool:
        match self.goal:
            case Goal.RATIO_AT_LEAST:
                return baseline is not None and baseline > 0 and subject / baseline >= self.value
            case Goal.RATIO_AT_MOST:
                return baseline is not None and baseline > 0 and subject / baseline <= self.value
            case Goal.AT_LEAST:
                return subject >= self.value
            case Goal.AT_MOST:
                return subject <= self.value
            case Goal.BELOW:
                return subject < self.value
            case Goal.TRUE:
                return subject == 1.0


@dataclass(frozen=True)
class Figure:
    """One measured figure of the service, beside its baseline's where there is one."""

    what: str
    subject: float
    unit: str
    baseline: float | None = None
    target: Target | None = None

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.subject / self.baseline

    @property
    def verdict(self) -> str:
        if self.target is None:
            return ""
        return "met" if self.target.met(self.subject, self.baseline) else "MISSED"

    def cells(self) -> list[str]:
        ratio = self.ratio
        return [
            self.what,
            _number(self.subject, self.unit),
            "" if self.baseline is None else _number(self.baseline, self.unit),
            "" if ratio is None else f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×",
            "" if self.target is None else self.target.text(self.unit),
            self.verdict,
        ]


@dataclass
class Section:
    """One benchmark: its figures and how they were taken."""

    key: str
    title: str
    baseline: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure


@dataclass
class Report:
    """Every section of one run."""

    machine: Machine
    mode: str
    sections: list[Section] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: A benchmark raised (its section says what); the run exits non-zero after writing.
    failed: bool = False

    def add(self, sections: list[Section]) -> None:
        """Add sections; one with the key of an earlier one extends it."""
        for section in sections:
            same = next((s for s in self.sections if s.key == section.key), None)
            if same is None:
                self.sections.append(section)
            else:
                same.figures += section.figures
                same.notes += section.notes
                same.seconds += section.seconds

    def markdown(self) -> str:
        missed = [f for s in self.sections for f in s.figures if f.verdict == "MISSED"]
        out = [
            "# Benchmarks",
            "",
            "Written by `make bench` (`python -m benchmarks`); do not edit by hand. Every figure",
            "of the service is measured beside its baseline in the same run, in alternating",
            "rounds, so the machine's noise hits both; each figure is the median of its rounds.",
            "",
            f"Mode: {self.mode}; the whole run took {self.seconds:.0f} s.",
            "",
            *[f"- {line}" for line in self.machine.lines()],
            *[f"- {note}" for note in self.notes],
            "",
            f"Targets missed: {len(missed)} of "
            f"{sum(1 for s in self.sections for f in s.figures if f.target)}.",
        ]
        for section in self.sections:
            out += [
                "",
                f"## {section.key}. {section.title}",
                "",
                f"Baseline: {section.baseline}."
                + (f" ({section.seconds:.0f} s)" if section.seconds else ""),
                "",
                "| figure | service | baseline | ratio | target | |",
                "|---|---:|---:|---:|---|---|",
                *["| " + " | ".join(f.cells()) + " |" for f in section.figures],
            ]
            if section.notes:
                out += ["", *[f"- {note}" for note in section.notes]]
        return "\n".join(out) + "\n"

    def write(self, path: Path) -> None:
        path.write_text(self.markdown())


def _number(value: float, unit: str) -> str:
    if unit == "yes/no":
        return "yes" if value == 1.0 else "no"
    if unit == "%":
        return f"{value:.1f} %"
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"
