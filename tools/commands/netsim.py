"""`citypack netsim`: run the ChirpStack v4-compatible network server emulator.

It listens for packet forwarders (GWMP v2 over UDP), runs the LoRaWAN network server for the
devices in ``--devices`` and publishes ChirpStack MQTT events to ``--broker`` until Ctrl-C or
SIGTERM (exit 0 after a clean stop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import uuid
from pathlib import Path
from typing import Any

from tools.commands.argtypes import host_port
from tools.errors import CliError


def _uuid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"application id must be a UUID, got {text!r}") from None


def register(sub: Any) -> None:
    from tools.netsim.server import DEFAULT_APPLICATION_ID

    parser: argparse.ArgumentParser = sub.add_parser(
        "netsim",
        help="run the ChirpStack v4-compatible network server emulator",
        description=(
            "Run a LoRaWAN network server that behaves like ChirpStack v4 towards applications: "
            "packet forwarders send GWMP v2 (Semtech UDP) to --udp, devices join with OTAA using "
            "the keys in --devices, and events are published to the MQTT broker on "
            "application/{applicationId}/device/{devEui}/event/{up|join|ack|txack|status|log} "
            "(QoS 1); downlinks are read from .../command/down. Runs until Ctrl-C or SIGTERM."
        ),
        epilog=(
            "The devices file is TOML or JSON with [[device]] entries: dev_eui, join_eui, "
            "app_key, class (A or C), name, tags. A provisioning inventory without keys works "
            "with --secrets (a JSON/TOML map dev_eui -> app_key). Example: citypack netsim "
            "--broker mqtt://127.0.0.1:1883 --devices keys.toml --capture air.jsonl"
        ),
    )
    parser.add_argument("--broker", required=True, metavar="URL", help="mqtt://host:port")
    parser.add_argument(
        "--devices", required=True, type=Path, metavar="FILE", help="keys file or inventory"
    )
    parser.add_argument(
        "--secrets", type=Path, metavar="FILE", help="AppKeys for an inventory without keys"
    )
    parser.add_argument(
        "--udp",
        type=host_port(listen=True),
        default=("127.0.0.1", 1700),
        metavar="HOST:PORT",
        help="GWMP (packet forwarder) UDP endpoint (default 127.0.0.1:1700)",
    )
    parser.add_argument(
        "--grpc",
        type=host_port(listen=True),
        metavar="HOST:PORT",
        help="serve ChirpStack's gRPC MulticastGroupService here (e.g. 127.0.0.1:8080)",
    )
    parser.add_argument(
        "--api-token-file",
        type=Path,
        metavar="FILE",
        help="with --grpc: the API token callers must send as 'authorization: Bearer …'",
    )
    parser.add_argument(
        "--application-id",
        type=_uuid,
        default=DEFAULT_APPLICATION_ID,
        metavar="UUID",
        help=f"the application UUID in the MQTT topics (default {DEFAULT_APPLICATION_ID})",
    )
    parser.add_argument(
        "--marshaler",
        choices=("json", "protobuf"),
        default="json",
        help="event/command encoding, like ChirpStack's [integration.mqtt] json (default json)",
    )
    parser.add_argument(
        "--capture", type=Path, metavar="FILE", help="append every air frame as JSON lines"
    )
    parser.add_argument(
        "--mqtt-v5", action="store_true", help="connect with MQTT 5 as ChirpStack does"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="give up (exit 1) when the broker is not reachable within S seconds (default 10)",
    )
    parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="do not log refused commands and dropped frames (logged as warnings by default)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tools.netsim.devices import DeviceFileError, load_devices
    from tools.netsim.mqtt import BrokerURLError, parse_broker_url
    from tools.netsim.server import NetsimConfig

    logging.basicConfig(
        level=logging.ERROR if args.quiet else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        parse_broker_url(args.broker)
    except BrokerURLError as exc:
        raise CliError(str(exc)) from None
    try:
        devices = load_devices(args.devices, args.secrets)
    except DeviceFileError as exc:
        raise CliError(str(exc)) from None
    if not args.connect_timeout > 0:
        raise CliError("--connect-timeout must be positive")
    if args.capture is not None and not args.capture.parent.is_dir():
        raise CliError(f"capture directory {args.capture.parent} does not exist")
    args.api_token = None
    if args.api_token_file is not None:
        if args.grpc is None:
            raise CliError("--api-token-file needs --grpc")
        try:
            args.api_token = args.api_token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise CliError(f"cannot read {args.api_token_file}: {exc.strerror}") from None
        if not args.api_token:
            raise CliError(f"{args.api_token_file} is empty")
    config = NetsimConfig(application_id=args.application_id)
    return asyncio.run(_serve(args, devices, config))


async def _serve(args: argparse.Namespace, devices: list[Any], config: Any) -> int:
    from tools.netsim.runner import Netsim

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    netsim = Netsim(
        devices,
        broker_url=args.broker,
        config=config,
        marshaler=args.marshaler,
        udp=args.udp,
        capture_path=args.capture,
        mqtt_options={"mqtt_v5": args.mqtt_v5},
        connect_timeout_s=args.connect_timeout,
        grpc=args.grpc,
        api_token=args.api_token,
    )
    try:
        async with netsim:
            assert netsim.gwmp is not None
            host, port = netsim.gwmp.address
            print(
                f"netsim: {len(devices)} devices, application {config.application_id}, "
                f"GWMP udp://{host}:{port}, MQTT {args.broker} ({args.marshaler})"
                + (f", capture {args.capture}" if args.capture else "")
                + (
                    f", gRPC {netsim.grpc_address[0]}:{netsim.grpc_address[1]}"
                    if netsim.grpc_address
                    else ""
                ),
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
    except OSError as exc:  # UDP port in use, broker unreachable
        raise CliError(f"netsim: {exc.strerror or exc}", exit_code=1) from None
    counters = netsim.server.counters
    print(
        "netsim: stopped; "
        + ", ".join(f"{name} {value}" for name, value in counters.items())
        + (f", published {netsim.mqtt.published}" if netsim.mqtt else ""),
        file=sys.stderr,
    )
    return 0
