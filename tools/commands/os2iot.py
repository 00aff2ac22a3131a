"""`citypack os2iot-emulator`: OS2iot's API (the slice citypack uses) with ChirpStack behind it.

It runs the ChirpStack emulator (as ``citypack netsim`` does: GWMP on ``--udp``, events to
``--broker``) and, in front of it, the OS2iot emulator on ``--listen``: devices created through
its API can join, downlinks sent through it reach the air, uplinks reach its HTTP-push data
targets. For tests, the demo (``citypack demo --os2iot``) and trying an OS2iot set-up without a
city's OS2iot; not a replacement for OS2iot.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from tools.commands.argtypes import host_port
from tools.errors import CliError


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "os2iot-emulator",
        help="run an OS2iot API emulator with the ChirpStack emulator behind it",
        description=(
            "Serve the slice of OS2iot's API that citypack uses (X-API-KEY; iot-device, "
            "createMany, downlink, search, data-target, datatarget-log) on --listen, in front of "
            "the ChirpStack emulator (GWMP on --udp, MQTT events to --broker). Runs until Ctrl-C."
        ),
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    parser.add_argument(
        "--api-key-file",
        required=True,
        type=Path,
        metavar="FILE",
        help="file holding the API key clients must send as X-API-KEY",
    )
    parser.add_argument(
        "--listen",
        type=host_port(listen=True),
        default=("127.0.0.1", 3000),
        metavar="HOST:PORT",
        help="the API's address (default 127.0.0.1:3000, OS2iot's port)",
    )
    parser.add_argument(
        "--udp",
        type=host_port(listen=True),
        default=("127.0.0.1", 1700),
        metavar="HOST:PORT",
        help="GWMP (packet forwarder) UDP endpoint of the ChirpStack emulator",
    )
    parser.add_argument(
        "--application-id", type=int, default=1, metavar="N", help="the OS2iot application id"
    )
    parser.add_argument("--capture", type=Path, metavar="FILE", help="air frames as JSON lines")
    parser.set_defaults(func=run)


def read_api_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"--api-key-file {path}: {exc.strerror}") from None
    if not key:
        raise CliError(f"--api-key-file {path} is empty")
    return key


def run(args: argparse.Namespace) -> int:
    from tools.netsim.mqtt import BrokerURLError, parse_broker_url

    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        parse_broker_url(args.broker)
    except BrokerURLError as exc:
        raise CliError(str(exc)) from None
    if args.application_id < 1:
        raise CliError("--application-id must be 1 or more")
    key = read_api_key(args.api_key_file)
    return asyncio.run(_serve(args, key))


async def _serve(args: argparse.Namespace, key: str) -> int:
    from tools.netsim.runner import Netsim
    from tools.os2iot.runner import Os2iotEmulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with (
            Netsim([], broker_url=args.broker, udp=args.udp, capture_path=args.capture) as netsim,
            Os2iotEmulator(
                api_key=key,
                broker_url=args.broker,
                netsim=netsim.server,
                listen=args.listen,
                application_id=args.application_id,
            ) as os2iot,
        ):
            profiles = ", ".join(f"{p.name}={p.id}" for p in os2iot.state.profiles)
            print(
                f"os2iot-emulator: API {os2iot.url} (application {args.application_id}; "
                f"device profiles {profiles}); ChirpStack emulator behind it, MQTT "
                f"{args.broker}",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    except OSError as exc:
        raise CliError(f"os2iot-emulator: {exc.strerror or exc}", exit_code=1) from None
    return 0
