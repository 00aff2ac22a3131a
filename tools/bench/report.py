"""One benchmark report for the whole project.

A benchmark is a module in :mod:`tools.bench` with ``run() -> list[Figure]``. ``citypack bench all``
runs every one listed in :data:`tools.bench.BENCHMARKS`, prints a table and writes
``bench-report.md`` and ``bench-report.json``. Speed is always a ratio against a baseline measured
in the same run, because these machines are shared and noisy; absolute figures are printed
for information.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

Comparison = Literal["<=", ">=", "info"]


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure and its goal.

    ``goal`` is ``None`` for figures printed for information. ``better`` says which way the goal
    points: ``"<="`` means the value must stay at or under the goal.
    """

    bench: str
    name: str
    value: float
    unit: str
    goal: float | None = None
    better: Comparison = "info"
    note: str = ""

    @property
    def meets(self) -> bool | None:
        if self.goal is None or self.better == "info":
            return None
        if self.better == "<=":
            return self.value <= self.goal
        return self.value >= self.goal


def machine() -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(figures: list[Figure]) -> str:
    rows = [("bench", "figure", "value", "unit", "goal", "meets", "note")]
    for fig in figures:
        goal = "" if fig.goal is None else f"{fig.better} {_fmt(fig.goal)}"
        meets = {None: "", True: "yes", False: "NO"}[fig.meets]
        rows.append((fig.bench, fig.name, _fmt(fig.value), fig.unit, goal, meets, fig.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(figures: list[Figure], errors: dict[str, str]) -> str:
    info = machine()
    out = [
        "# citypack benchmark report",
        "",
        "Written by `make bench` (`citypack bench all`). Speed figures are ratios against a baseline",
        "measured in the same run on the same machine; absolute numbers are for information only.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        "| bench | figure | value | unit | goal | meets | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        goal = "" if fig.goal is None else f"{fig.better} {_fmt(fig.goal)}"
        meets = {None: "", True: "yes", False: "**no**"}[fig.meets]
        out.append(
            f"| {fig.bench} | {fig.name} | {_fmt(fig.value)} | {fig.unit} | {goal} | {meets} "
            f"| {fig.note} |"
        )
    if errors:
        out += ["", "## Benchmarks that failed to run", ""]
        out += [f"- `{name}`: {message}" for name, message in errors.items()]
    return "\n".join(out) + "\n"


def write_report(figures: list[Figure], errors: dict[str, str], directory: Path) -> None:
    (directory / "bench-report.md").write_text(markdown(figures, errors), encoding="utf-8")
    payload = {
        "machine": machine(),
        "figures": [{**asdict(f), "meets": f.meets} for f in figures],
        "errors": errors,
    }
    (directory / "bench-report.json").write_text(
        json.dumps(payload, indent=2) + "\n", encoding="utf-8"
    )
