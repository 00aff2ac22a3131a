"""One benchmark report for the whole project (issue 8, "One benchmark report").

A benchmark is a module in :mod:`tools.bench` with ``run() -> list[Figure]``. ``citypack bench all``
runs every one listed in :data:`tools.bench.BENCHMARKS`, each in its own child process (see
:func:`run_isolated`: a bench that raises, crashes the interpreter, leaks memory or hangs past its
time limit is reported as failed and the others still run), prints a table and writes
``bench-report.md`` and ``bench-report.json``. Speed is always a ratio against a baseline measured
in the same run, because these machines are shared and noisy; absolute figures are printed for
information.

:data:`REQUIRED` is the list of figures the issues ask for, each with the issue's goal. The report
checks every one of them against what the benches measured: a figure whose bench is absent,
failed, or did not produce it is listed as **missing** (never invented). How to read the report:
docs/bench-report.md.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Comparison = Literal["<=", ">=", "info"]

__all__ = [
    "REQUIRED",
    "BenchRun",
    "Check",
    "Figure",
    "Required",
    "check_required",
    "machine",
    "markdown",
    "run_isolated",
    "table",
    "write_report",
]


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


@dataclass(frozen=True, slots=True)
class Required:
    """A figure an issue asks for. ``name`` is the figure's exact name, or a prefix ending in
    ``*`` (a name that carries a run parameter, e.g. the number of uplinks)."""

    issue: int
    bench: str
    name: str
    goal: float | None = None
    better: Comparison = "info"
    asked: str = ""

    def matches(self, figure: Figure) -> bool:
        if figure.bench != self.bench:
            return False
        if self.name.endswith("*"):
            return figure.name.startswith(self.name[:-1])
        return figure.name == self.name


# issue 17's curve: each of these at 1k, 10k and 100k devices (the 100k ratio and RSS have goals)
_CURVE: tuple[tuple[str, float | None, Comparison], ...] = (
    ("throughput ratio gateway/baseline", None, "info"),
    ("latency p50 receive->committed", None, "info"),
    ("latency p99 receive->committed", 50.0, "<="),
    ("RSS after every device reported", None, "info"),
)

# What the issues ask the report to show, with the issue's own goal (None: shown, no goal).
REQUIRED: tuple[Required, ...] = (
    # issue 2: protocol and payloads
    Required(2, "payload_size", "bin_status bytes", 11, "<=", "bin_status payload size"),
    Required(2, "payload_size", "lamp_status bytes", 24, "<=", "other periodic <= 24 B"),
    Required(2, "payload_size", "lamp_counters bytes", 24, "<=", "other periodic <= 24 B"),
    Required(2, "payload_size", "bin_status bytes under LPP", 1, ">=", "smaller than Cayenne LPP"),
    Required(2, "payload_size", "lamp_status bytes under LPP", 1, ">=", "smaller than LPP"),
    Required(2, "payload_size", "lamp_counters bytes under LPP", 1, ">=", "smaller than LPP"),
    Required(2, "payload_size", "bin_status airtime SF7", asked="airtime at SF7"),
    Required(2, "payload_size", "bin_status airtime SF12", asked="airtime at SF12"),
    Required(2, "payload_size", "lamp_status airtime SF7", asked="airtime at SF7"),
    Required(2, "payload_size", "lamp_status airtime SF12", asked="airtime at SF12"),
    Required(2, "payload_size", "lamp_counters airtime SF7", asked="airtime at SF7"),
    Required(2, "payload_size", "lamp_counters airtime SF12", asked="airtime at SF12"),
    Required(2, "codec_throughput", "status decode / cbor2.loads", 0.3, ">=", "decode ratio"),
    # issue 3: firmware MAC
    Required(3, "firmware_mac", "uplink cycle runs in code + 64 KB heap", 1, ">=", "fits 64 KB"),
    Required(3, "firmware_mac", "bytes allocated per uplink over *", 256, "<=", "bytes/uplink"),
    Required(3, "firmware_mac", ".mpy size of the MAC", 40960, "<=", "MAC .mpy < 40 KB"),
    # issue 4: gateway; issue 17: at city scale, a curve over 1k, 10k and 100k devices
    Required(
        17,
        "gateway_throughput",
        "throughput ratio gateway/baseline, 100,000 devices",
        0.8,
        ">=",
        "throughput >= 0.8x the same receive path at 100k devices (median of >= 3 rounds)",
    ),
    Required(
        17,
        "gateway_throughput",
        "RSS after every device reported, 100,000 devices",
        200,
        "<=",
        "RSS <= 200 MB with 100k devices after every one reported",
    ),
    Required(17, "gateway_throughput", "RSS per device, 100,000 devices", asked="bytes/device"),
    *(
        Required(17, "gateway_throughput", f"{name}, {n} devices", goal, better, f"at {n} devices")
        for n in ("1,000", "10,000", "100,000")
        for name, goal, better in _CURVE
        if not (n == "100,000" and name.startswith(("throughput", "RSS")))
    ),
    # issue 16: several gateway instances on PostgreSQL
    Required(
        16,
        "gateway_fleet",
        "throughput ratio 2 on PostgreSQL / 1 on SQLite",
        1.0,
        ">=",
        "2 instances on PG vs 1 on SQLite",
    ),
    Required(
        16,
        "gateway_fleet",
        "latency p99 receive->committed on PostgreSQL",
        50,
        "<=",
        "p99 at 1,000/s on PostgreSQL",
    ),
    Required(
        16,
        "gateway_fleet",
        "failover kill -9 of the dispatcher -> next command handed over",
        10,
        "<=",
        "failover time",
    ),
    # issue 5: node applications
    Required(
        5,
        "firmware_apps",
        "bin node: a week on the real MAC in code + 64 KB heap",
        1,
        ">=",
        "bin app + MAC run a simulated week under heapsize=64k",
    ),
    Required(
        5,
        "firmware_apps",
        "lamp node: a week on the real MAC in code + 64 KB heap",
        1,
        ">=",
        "lamp app + MAC run a simulated week under heapsize=64k",
    ),
    Required(5, "firmware_apps", "bin node: airtime per day (as sent, SF12)", asked="airtime/day"),
    Required(
        5, "firmware_apps", "bin node: battery life at SF9, hourly reports", 5, ">=", "> 5 years"
    ),
    Required(5, "firmware_apps", "bundle .mpy size", 150, "<=", "bundle < 150 KB"),
    # issue 6: simulator
    Required(6, "sim_speed", "city_10k_speed_vs_real_time", 10, ">=", "10k nodes >= 10x real"),
    # issue 17: firmware figures as an ESP32 with frozen modules sees them (the heap goals
    # tighten issue 3's and issue 5's 64 KB to 48 KB, so 16 KB of the budget stay free)
    Required(
        17, "firmware_mac", "peak heap of the cycle above code", 48, "<=", "MAC heap, 16 KB left"
    ),
    Required(
        17, "firmware_apps", "bin node: peak live heap above code", 48, "<=", "<= 48 KB a week"
    ),
    Required(
        17, "firmware_apps", "lamp node: peak live heap above code", 48, "<=", "<= 48 KB a week"
    ),
    Required(17, "firmware_apps", "code to freeze into flash", asked="code size to freeze"),
    Required(
        17, "firmware_apps", "bin node: bytes allocated per full report", 128, "<=", "<= 128 B"
    ),
    Required(
        17, "firmware_apps", "lamp node: bytes allocated per full report", 128, "<=", "<= 128 B"
    ),
    Required(
        17, "payload_size", "bin_status bytes, worst case", 11, "<=", "worst case in US915 DR0"
    ),
    Required(17, "payload_size", "bin_status bytes, typical with tilt", asked="with tilt"),
    Required(17, "payload_size", "lamp_status bytes, worst case", asked="worst case"),
    Required(17, "payload_size", "lamp_counters bytes, worst case", asked="worst case"),
    # issue 18: multicast
    Required(
        18,
        "group_override",
        "lamp_override frames on the air, multicast",
        1,
        "<=",
        "group lamp_override to 30 lamps: 1 frame",
    ),
    Required(
        18,
        "group_override",
        "lamp_override frames on the air, unicast",
        asked="vs 30 unicast frames",
    ),
    # issue 18: FUOTA on the node
    Required(
        18,
        "fuota_firmware",
        "peak live heap during a campaign, above the code",
        48,
        "<=",
        "FUOTA peak heap <= 48 KB",
    ),
    Required(
        18, "fuota_firmware", "32 KB bundle applied with 10 % fragment loss", 1, ">=", "10 % loss"
    ),
    Required(
        18, "fuota_firmware", "32 KB bundle applied with 30 % fragment loss", 1, ">=", "30 % loss"
    ),
    # issue 18: FUOTA campaigns through the gateway
    Required(
        18,
        "fuota_campaign",
        "30 lamps, 32 KB: share applied with 10 % fragment loss",
        1,
        ">=",
        "street of 30 lamps, 10 % loss",
    ),
    Required(
        18,
        "fuota_campaign",
        "30 lamps, 32 KB: share applied with 30 % fragment loss",
        1,
        ">=",
        "street of 30 lamps, 30 % loss",
    ),
    Required(18, "fuota_campaign", "airtime ratio unicast/multicast", asked="airtime vs unicast"),
    # issue 21: what the city gets
    Required(21, "city_outcomes", "truck km citypack / fixed", 0.6, "<=", "truck km <= 0.6x"),
    Required(
        21, "city_outcomes", "overflow bin-hours citypack - fixed", 0.0, "<=", "no more overflow"
    ),
    Required(21, "city_outcomes", "lamp energy citypack / full on", 0.4, "<=", "<= 0.4x full on"),
    Required(21, "city_outcomes", "lamp energy citypack / static", 0.8, "<=", "<= 0.8x static"),
    Required(21, "city_outcomes", "road users lit ahead (citypack)", 99.0, ">=", ">= 99 % lit"),
    Required(
        21, "city_outcomes", "route planning, 2000 bins 4 trucks", 5.0, "<=", "2,000 bins < 5 s"
    ),
    # issue 20: provisioning into the gateway registry
    Required(
        20,
        "registry_throughput",
        "provision register into the gateway registry, 1,000 nodes",
        500,
        ">=",
        ">= 500 nodes/s",
    ),
)


@dataclass(frozen=True, slots=True)
class BenchRun:
    """How one bench ran: ``status`` is ``ok``, ``failed``, ``timeout`` or ``absent``."""

    name: str
    status: str
    seconds: float
    error: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """One :class:`Required` figure against the run: ``figure`` is None when it is missing."""

    required: Required
    figure: Figure | None
    reason: str = ""

    @property
    def meets(self) -> bool | None:
        if self.figure is None:
            return None
        req = self.required
        if req.goal is None or req.better == "info":
            return self.figure.meets
        if req.better == "<=":
            return self.figure.value <= req.goal
        return self.figure.value >= req.goal


def check_required(
    figures: list[Figure],
    runs: dict[str, BenchRun],
    required: tuple[Required, ...] = REQUIRED,
    listed: tuple[str, ...] | None = None,
) -> list[Check]:
    """Match every required figure to a measured one, or say why it is missing."""
    if listed is None:
        from tools.bench import BENCHMARKS

        listed = BENCHMARKS
    checks = []
    for req in required:
        found = next((f for f in figures if req.matches(f)), None)
        if found is not None:
            checks.append(Check(req, found))
            continue
        run = runs.get(req.bench)
        if req.bench not in listed:
            reason = f"bench {req.bench!r} is not in tools.bench.BENCHMARKS"
        elif run is None:
            reason = f"bench {req.bench!r} was not run this time"
        elif run.status != "ok":
            reason = f"bench {req.bench!r} {run.status}: {run.error}"[:300]
        else:
            reason = f"bench {req.bench!r} ran but did not produce this figure"
        checks.append(Check(req, None, reason))
    return checks


def _memory_mb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def machine() -> dict[str, object]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_mb": _memory_mb(),
        "load_average": [round(x, 2) for x in load] if load else None,
        "commit": _git_commit(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _fmt(value: float) -> str:
    if value == int(value) and abs(value) < 1e12:
        return str(int(value))
    if abs(value) >= 100:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _goal(goal: float | None, better: Comparison) -> str:
    return "" if goal is None or better == "info" else f"{better} {_fmt(goal)}"


def table(figures: list[Figure]) -> str:
    rows = [("bench", "figure", "value", "unit", "goal", "meets", "note")]
    for fig in figures:
        meets = {None: "", True: "yes", False: "NO"}[fig.meets]
        rows.append(
            (fig.bench, fig.name, _fmt(fig.value), fig.unit, _goal(fig.goal, fig.better), meets,
             fig.note)
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(
    figures: list[Figure],
    errors: dict[str, str],
    runs: dict[str, BenchRun] | None = None,
    checks: list[Check] | None = None,
    info: dict[str, object] | None = None,
) -> str:
    info = info or machine()
    runs = runs or {}
    checks = check_required(figures, runs) if checks is None else checks
    missing = [c for c in checks if c.figure is None]
    failing = [c for c in checks if c.meets is False]
    out = [
        "# citypack benchmark report",
        "",
        "Written by `make bench` (`citypack bench all`); how to read it: docs/bench-report.md.",
        "Speed figures are ratios against a baseline measured in the same run on the same",
        "machine; absolute numbers are for information only.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()),
        "",
        f"Summary: {len(checks) - len(missing)} of {len(checks)} required figures measured, "
        f"{len(failing)} miss their goal, {len(missing)} missing; "
        f"{sum(1 for r in runs.values() if r.status == 'ok')} of {len(runs)} benches ran.",
        "",
        "## Goals the issues set",
        "",
        "| issue | bench | figure | value | unit | goal | meets |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in checks:
        req = check.required
        goal = _goal(req.goal, req.better)
        if check.figure is None:
            out.append(
                f"| {req.issue} | {req.bench} | {_cell(req.name)} | MISSING | | {goal} "
                f"| {_cell(check.reason)} |"
            )
            continue
        fig = check.figure
        meets = {None: "", True: "yes", False: "**no**"}[check.meets]
        out.append(
            f"| {req.issue} | {req.bench} | {_cell(fig.name)} | {_fmt(fig.value)} | {fig.unit} "
            f"| {goal} | {meets} |"
        )
    out += [
        "",
        "## Every figure",
        "",
        "| bench | figure | value | unit | goal | meets | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        meets = {None: "", True: "yes", False: "**no**"}[fig.meets]
        out.append(
            f"| {fig.bench} | {_cell(fig.name)} | {_fmt(fig.value)} | {fig.unit} "
            f"| {_goal(fig.goal, fig.better)} | {meets} | {_cell(fig.note)} |"
        )
    if runs:
        out += [
            "",
            "## Benchmarks",
            "",
            "| bench | status | seconds | error |",
            "|---|---|---|---|",
        ]
        for run in runs.values():
            out.append(f"| {run.name} | {run.status} | {run.seconds:.1f} | {_cell(run.error)} |")
    if errors:
        out += ["", "## Benchmarks that failed to run", ""]
        out += [f"- `{name}`: {_cell(message)}" for name, message in errors.items()]
    return "\n".join(out) + "\n"


def report_json(
    figures: list[Figure],
    errors: dict[str, str],
    runs: dict[str, BenchRun] | None = None,
    checks: list[Check] | None = None,
    info: dict[str, object] | None = None,
) -> dict[str, Any]:
    runs = runs or {}
    checks = check_required(figures, runs) if checks is None else checks
    return {
        "machine": info or machine(),
        "figures": [{**asdict(f), "meets": f.meets} for f in figures],
        "required": [
            {
                "issue": c.required.issue,
                "bench": c.required.bench,
                "name": c.required.name,
                "asked": c.required.asked,
                "goal": c.required.goal,
                "better": c.required.better,
                "status": "missing" if c.figure is None else "measured",
                "figure": None if c.figure is None else c.figure.name,
                "value": None if c.figure is None else c.figure.value,
                "unit": None if c.figure is None else c.figure.unit,
                "meets": c.meets,
                "reason": c.reason,
            }
            for c in checks
        ],
        "benches": {name: asdict(run) for name, run in runs.items()},
        "errors": errors,
    }


def write_report(
    figures: list[Figure],
    errors: dict[str, str],
    directory: Path,
    runs: dict[str, BenchRun] | None = None,
) -> list[Check]:
    """Write ``bench-report.md`` and ``bench-report.json``; return the required-figure checks."""
    runs = runs or {}
    info = machine()
    checks = check_required(figures, runs)
    (directory / "bench-report.md").write_text(
        markdown(figures, errors, runs, checks, info), encoding="utf-8"
    )
    payload = report_json(figures, errors, runs, checks, info)
    (directory / "bench-report.json").write_text(
        json.dumps(payload, indent=2) + "\n", encoding="utf-8"
    )
    return checks


# --- isolation ---------------------------------------------------------------------------------

_MARK = "CITYPACK-BENCH-FIGURES "


def run_isolated(
    name: str, *, timeout_s: float = 900.0, cwd: Path | None = None
) -> tuple[list[Figure], BenchRun]:
    """Run ``tools.bench.<name>.run()`` in a child interpreter and collect its figures.

    The child prints its figures as one marked JSON line; everything else it prints goes to our
    stderr. A raise, a crash, a non-zero exit or the time limit makes a failed :class:`BenchRun`
    with the last line of its error output, and no figures.
    """
    started = time.monotonic()
    root = Path(__file__).resolve().parents[2]
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tools.bench.report", "--child", name],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=cwd or root,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        tail = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else ""
        if tail:
            sys.stderr.write(tail[-2000:])
        return [], BenchRun(
            name, "timeout", time.monotonic() - started, f"no result after {timeout_s:.0f} s"
        )
    seconds = time.monotonic() - started
    if proc.stderr:
        sys.stderr.write(proc.stderr[-4000:])
    figures: list[Figure] = []
    for line in proc.stdout.splitlines():
        if line.startswith(_MARK):
            figures = [Figure(**doc) for doc in json.loads(line[len(_MARK) :])]
        elif line.strip():
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0:
            last = f"killed by signal {-proc.returncode}; {last}"
        return [], BenchRun(name, "failed", seconds, last[:300])
    return figures, BenchRun(name, "ok", seconds)


def _child(name: str) -> int:
    import importlib

    # a bare name is a bench of tools.bench; a dotted one any module with run() (tests use it)
    module = importlib.import_module(name if "." in name else f"tools.bench.{name}")
    figures = module.run()
    print(_MARK + json.dumps([asdict(f) for f in figures]), flush=True)
    return 0


if __name__ == "__main__":  # python -m tools.bench.report --child NAME (used by run_isolated)
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        sys.exit(_child(sys.argv[2]))
    print("usage: python -m tools.bench.report --child NAME", file=sys.stderr)
    sys.exit(2)
