"""The `citypack` command.

Each area registers its subcommands from a module in :mod:`tools.commands` that exposes
``register(subparsers)``; a subcommand sets ``func(args) -> int`` with ``set_defaults``.
Errors are one clear line on stderr and a non-zero exit, never a traceback
(set ``CITYPACK_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from protocol.errors import ProtocolError
from tools.errors import CliError

# Areas in the order `citypack --help` lists them. Each is tools/commands/<name>.py.
COMMAND_MODULES = (
    "codec",
    "frame",
    "codegen",
    "gateway",
    "collection",
    "provision",
    "netsim",
    "os2iot",
    "sim",
    "demo",
    "firmware",
    "fuota",
    "bench",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("citypack")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="citypack",
        description="citypack: run a municipal LoRaWAN fleet of bins and lamps around ChirpStack.",
    )
    parser.add_argument("--version", action="version", version=f"citypack {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"tools.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports every area: a Ctrl-C may land here too
    except KeyboardInterrupt:
        return 130
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except (CliError, ProtocolError) as exc:
        print(f"citypack: error: {exc}", file=sys.stderr)
        return exc.exit_code if isinstance(exc, CliError) else 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # the promise is one line, never a traceback
        if os.environ.get("CITYPACK_DEBUG"):
            raise
        print(f"citypack: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
