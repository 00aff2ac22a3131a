"""`citypack bench …`: run the project's benchmarks and write the report.

Each bench runs in its own child interpreter (:func:`tools.bench.report.run_isolated`): one that
fails, crashes or exceeds ``--timeout`` is reported as failed and the others still run. The report
(``bench-report.md``/``.json``) checks every figure the issues ask for against its goal and lists
the ones it could not measure as missing; docs/bench-report.md explains how to read it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tools.bench import BENCHMARKS, time_limit_s
from tools.bench.report import BenchRun, Figure, run_isolated, table, write_report
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "bench", help="run benchmarks and write bench-report.md/json"
    )
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help=f"'all' or one or more of: {', '.join(BENCHMARKS) or '(none yet)'}",
    )
    parser.add_argument(
        "--report-dir", type=Path, default=Path("."), help="where to write the report"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="S",
        help="seconds each bench may take before it is stopped and reported (default 900, "
        "longer for the benches listed in tools/bench/__init__.py TIME_LIMITS_S)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one bench's result as one JSON object, no report (city_outcomes)",
    )
    parser.set_defaults(func=run)


def _print_json(names: list[str]) -> int:
    import importlib
    import json

    module = importlib.import_module(f"tools.bench.{names[0]}") if len(names) == 1 else None
    if module is None or not hasattr(module, "json_result"):
        raise CliError("--json prints one bench that has a JSON result: city_outcomes")
    print(json.dumps(module.json_result()))
    return 0


def run(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise CliError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    if args.timeout is not None and args.timeout <= 0:
        raise CliError("--timeout: must be positive")
    if args.json:
        return _print_json(names)
    figures: list[Figure] = []
    runs: dict[str, BenchRun] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        limit = time_limit_s(name) if args.timeout is None else args.timeout
        got, outcome = run_isolated(name, timeout_s=limit)
        figures.extend(got)
        runs[name] = outcome
        print(f"  {name}: {outcome.status} in {outcome.seconds:.1f} s", file=sys.stderr)
    errors = {r.name: r.error for r in runs.values() if r.status != "ok"}
    print(table(figures))
    args.report_dir.mkdir(parents=True, exist_ok=True)
    checks = write_report(figures, errors, args.report_dir, runs)
    missing = [c for c in checks if c.figure is None]
    failing = [c for c in checks if c.meets is False]
    print(
        f"\nrequired figures: {len(checks) - len(missing)}/{len(checks)} measured, "
        f"{len(failing)} miss their goal, {len(missing)} missing"
    )
    for check in missing:
        print(f"  missing: {check.required.bench}: {check.required.name} ({check.reason})")
    for check in failing:
        fig = check.figure
        assert fig is not None
        print(f"  goal missed: {fig.bench}: {fig.name} = {fig.value:g} {fig.unit}")
    print(f"report: {args.report_dir / 'bench-report.md'}, {args.report_dir / 'bench-report.json'}")
    for name, message in errors.items():
        print(f"bench {name} failed: {message}", file=sys.stderr)
    return 1 if errors else 0
