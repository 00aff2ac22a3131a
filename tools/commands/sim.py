"""`citypack sim`: the fleet simulator as a load generator (see :mod:`tools.sim.runner`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from tools.commands.argtypes import count, host_port, positive_number
from tools.errors import CliError

_COUNT = count(100_000)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sim",
        help="run simulated bins and lamps (real firmware) against the emulator or a GWMP endpoint",
        description=(
            "Run N bin and M lamp nodes of the real firmware in simulated, accelerated time, "
            "through simulated gateways with a path-loss model. With --udp the gateways speak "
            "GWMP (Semtech UDP packet forwarder) to any endpoint, e.g. a ChirpStack Gateway "
            "Bridge; otherwise the in-process emulator is used."
        ),
        epilog=(
            "Load-testing a real ChirpStack: run once with --workdir DIR to write the inventory "
            "and secrets, register them (citypack provision register), then run "
            "citypack sim --workdir DIR --udp BRIDGE_HOST:1700 --speed 1."
        ),
    )
    parser.add_argument("--bins", type=_COUNT, default=40, help="bin nodes (default 40)")
    parser.add_argument("--lamps", type=_COUNT, default=30, help="lamp nodes (default 30)")
    parser.add_argument(
        "--udp",
        type=host_port(listen=False),
        metavar="HOST:PORT",
        help="send GWMP to this packet-forwarder endpoint",
    )
    parser.add_argument(
        "--broker", metavar="URL", help="without --udp: the emulator publishes events here"
    )
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
        "--report-interval",
        type=positive_number,
        default=900,
        metavar="S",
        help="report interval of the nodes in simulated seconds (default 900)",
    )
    parser.add_argument("--workdir", type=Path, metavar="DIR", help="keep inventory and keys here")
    parser.add_argument("--capture", type=Path, metavar="FILE", help="air capture (emulator only)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated city")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tools.sim import fleet
    from tools.sim.runner import SimOptions, run_sim

    reason = fleet.missing()
    if reason is not None:
        raise CliError(f"the fleet simulator cannot run yet: {reason}", exit_code=1)
    if args.bins + args.lamps == 0:
        raise CliError("give --bins or --lamps above 0")
    if args.udp and args.capture:
        raise CliError("--capture needs the in-process emulator; it cannot be used with --udp")
    options = SimOptions(
        bins=args.bins,
        lamps=args.lamps,
        speed=args.speed,
        duration_s=args.duration,
        udp=args.udp,
        broker_url=args.broker,
        workdir=args.workdir,
        capture=args.capture,
        report_interval_s=int(args.report_interval),
        seed=args.seed,
    )
    asyncio.run(run_sim(options, sys.stdout))
    return 0
