"""`citypack codegen [--check]`: write or check the codecs generated from protocol/catalogue.

Generated: firmware/lib/citypack_payloads.py and protocol/generated/chirpstack_codec.js
(:mod:`protocol.codegen`). ``--check`` exits 1 with one line naming each stale file, so
``make check`` fails when someone changed the catalogue and forgot to regenerate.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from protocol import codegen
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "codegen",
        help="generate the firmware and ChirpStack codecs from protocol/catalogue",
        description="Write firmware/lib/citypack_payloads.py and "
        "protocol/generated/chirpstack_codec.js from the message catalogue.",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if a generated file is missing or stale",
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=codegen.ROOT,
        metavar="DIR",
        help="checkout to write or check (default: the one this citypack runs from)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.check:
        stale = codegen.stale(args.root)
        if stale:
            raise CliError(
                f"stale generated file(s): {', '.join(stale)}; run `citypack codegen`",
                exit_code=1,
            )
        print(f"generated files are current: {', '.join(codegen.TARGETS)}")
        return 0
    changed = codegen.write(args.root)
    for path in codegen.TARGETS:
        print(f"{'wrote' if path in changed else 'unchanged'} {path}")
    return 0
