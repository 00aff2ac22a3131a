"""`citypack demo`: the whole city on this machine (broker, emulator, fleet, gateway, live view).

See :mod:`tools.demo` for what runs where. ``--duration S`` runs for S seconds of wall time and
exits 0; without it the demo runs until Ctrl-C and then stops every part cleanly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools.commands.argtypes import count, positive_number
from tools.errors import CliError

_COUNT = count(2000, "for the demo")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run a simulated city: broker, network emulator, fleet, gateway and a live view",
        description=(
            "Run the whole citypack stack on this machine: an embedded MQTT broker (unless "
            "--broker), the ChirpStack-compatible emulator, a fleet of simulated bins and lamps "
            "running the real firmware along streets of Aarhus, and the gateway on SQLite. "
            "Shows a live view on a terminal, plain lines otherwise."
        ),
    )
    parser.add_argument("--bins", type=_COUNT, default=40, help="bin nodes (default 40)")
    parser.add_argument("--lamps", type=_COUNT, default=30, help="lamp nodes (default 30)")
    parser.add_argument(
        "--speed",
        type=positive_number,
        default=60.0,
        help="simulated seconds per second (default 60)",
    )
    parser.add_argument(
        "--duration", type=positive_number, metavar="S", help="stop after S seconds of wall time"
    )
    parser.add_argument(
        "--broker", metavar="URL", help="use this MQTT broker (mqtt://host:port) instead of amqtt"
    )
    parser.add_argument(
        "--capture", type=Path, metavar="FILE", help="write every frame on the air (JSON lines)"
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="keep inventory, keys, database and logs here instead of a temporary directory",
    )
    parser.add_argument(
        "--report-interval",
        type=positive_number,
        default=300,
        metavar="S",
        help="the nodes' report interval in simulated seconds (default 300)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated city")
    parser.add_argument(
        "--os2iot",
        action="store_true",
        help="run it as an OS2iot city: devices created through an OS2iot emulator, uplinks "
        "pushed to the gateway by its data target, commands sent through its API",
    )
    parser.add_argument(
        "--fuota",
        action="store_true",
        help="update one street's lamps over the air (FUOTA campaign, 10 %% of multicast "
        "frames lost); without --duration the demo ends when the campaign does",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tools.demo import DemoOptions, run_demo

    if args.bins + args.lamps == 0:
        raise CliError("a city needs at least one node: give --bins or --lamps above 0")
    if args.fuota and args.os2iot:
        raise CliError("--fuota and --os2iot cannot be combined (OS2iot has no FUOTA API)")
    if args.fuota and args.lamps == 0:
        raise CliError("--fuota needs lamps: give --lamps above 0")
    if args.workdir is not None and args.workdir.exists() and not args.workdir.is_dir():
        raise CliError(f"--workdir {args.workdir} exists and is not a directory")
    options = DemoOptions(
        bins=args.bins,
        lamps=args.lamps,
        speed=args.speed,
        duration_s=args.duration,
        broker_url=args.broker,
        capture=args.capture,
        workdir=args.workdir,
        seed=args.seed,
        report_interval_s=int(args.report_interval),
        os2iot=args.os2iot,
        fuota=args.fuota,
    )
    result = run_demo(options)
    if result.failure:
        raise CliError(result.failure, exit_code=1)
    return 0
