"""`citypack bench …`: run the project's benchmarks and write the report."""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path
from typing import Any

from tools.bench import BENCHMARKS
from tools.bench.report import Figure, table, write_report
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
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise CliError(f"unknown benchmark {unknown[0]!r}; known: {', '.join(BENCHMARKS)}")
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(f"tools.bench.{name}")
            figures.extend(module.run())
        except Exception as exc:  # a broken bench is reported, the others still run
            errors[name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
    print(table(figures))
    args.report_dir.mkdir(parents=True, exist_ok=True)
    write_report(figures, errors, args.report_dir)
    print(f"\nreport: {args.report_dir / 'bench-report.md'}, {args.report_dir / 'bench-report.json'}")
    for name, message in errors.items():
        print(f"bench {name} failed: {message}", file=sys.stderr)
    return 1 if errors else 0
