"""`citypack firmware build [--out DIR]`: the deployable firmware bundle and its size."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tools.firmware import MANIFEST_NAME, SIZE_GOAL_BYTES, build_bundle, size_table


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "firmware", help="build the node firmware bundle (.mpy + manifest)"
    )
    fsub = parser.add_subparsers(dest="firmware_command", metavar="ACTION", required=True)
    build = fsub.add_parser(
        "build", help="compile firmware/ with mpy-cross into a bundle and print its size"
    )
    build.add_argument("--out", type=Path, default=Path("build/firmware"), help="bundle directory")
    build.set_defaults(func=run_build)


def run_build(args: argparse.Namespace) -> int:
    bundle = build_bundle(args.out)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text(encoding="utf-8"))
    rows = size_table(bundle)
    width = max(len(name) for name, _, _ in rows)
    print(f"{'part'.ljust(width)}  files     bytes")
    for name, count, size in rows:
        print(f"{name.ljust(width)}  {count:5d}  {size:8d}")
    mpy = int(manifest["mpy_bytes"])
    verdict = "meets" if mpy <= SIZE_GOAL_BYTES else "OVER"
    print(
        f"\n.mpy total {mpy} bytes ({mpy / 1024:.1f} KB; goal < {SIZE_GOAL_BYTES // 1024} KB: "
        f"{verdict}); all files {manifest['total_bytes']} bytes"
    )
    print(f"micropython-lib packages: {', '.join(manifest['packages'])}")
    print(f"install on a board: {manifest['install']}")
    print(f"bundle: {bundle}")
    return 0
