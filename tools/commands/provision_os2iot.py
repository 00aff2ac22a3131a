"""`citypack provision register --os2iot …` and `citypack provision decommission`: nodes created
and deleted through OS2iot's API where OS2iot owns ChirpStack (tools/provision/os2iot.py).

Kept beside tools/commands/provision.py, which registers these options and subcommands.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from tools.commands.argtypes import uuid_text
from tools.errors import CliError

__all__ = [
    "add_os2iot_options",
    "application_id_text",
    "decommission_parser",
    "run_register_os2iot",
]


def application_id_text(text: str) -> str:
    """``--application-id``: ChirpStack's UUID, or OS2iot's application number (with --os2iot);
    which one a command needs is checked where it is used."""
    if text.strip().isdigit():
        return text.strip()
    return uuid_text(text)


def add_os2iot_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--os2iot", metavar="URL", help="OS2iot's API (e.g. https://os2iot.example/api/v1)"
    )
    parser.add_argument(
        "--api-key-file", type=Path, help="file with the OS2iot API key (sent as X-API-KEY)"
    )
    parser.add_argument(
        "--device-profile-id",
        action="append",
        metavar="[KIND=]UUID",
        help="ChirpStack device profile for OS2iot (repeat per kind: bin=UUID lamp=UUID)",
    )


def profile_map(values: list[str] | None) -> dict[str, str]:
    """``[KIND=]UUID`` options as kind -> UUID ("*" for every kind)."""
    out: dict[str, str] = {}
    for value in values or []:
        kind, _, text = value.rpartition("=")
        try:
            out[kind or "*"] = str(uuid.UUID(text))
        except ValueError:
            raise CliError(f"--device-profile-id {value!r}: expected [KIND=]UUID") from None
    if not out:
        raise CliError("--device-profile-id is required with --os2iot")
    return out


def _os2iot_args(args: argparse.Namespace) -> tuple[str, str]:
    from tools.commands.provision import _read_token

    if not args.os2iot or not args.api_key_file:
        raise CliError("--os2iot and --api-key-file go together")
    if not args.os2iot.startswith(("http://", "https://")):
        raise CliError(f"--os2iot {args.os2iot!r}: expected an http(s):// URL")
    return args.os2iot, _read_token(args.api_key_file, "--api-key-file")


def _progress(verb: str) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=console,
        disable=not console.is_terminal,
    )


def run_register_os2iot(args: argparse.Namespace) -> int:
    """Create or update the inventory's nodes through OS2iot (and the gateway registry)."""
    from tools.commands.provision import _read_token, _secrets_of
    from tools.provision.inventory import load_inventory
    from tools.provision.os2iot import Os2iot, register_os2iot
    from tools.provision.register import print_report, register_batch
    from tools.provision.registry import GatewayRegistry

    url, key = _os2iot_args(args)
    profiles = profile_map(args.device_profile_id)
    try:
        application_id = int(args.application_id or "")
    except ValueError:
        raise CliError(
            "--application-id must be OS2iot's application number with --os2iot"
        ) from None
    if application_id < 1:
        raise CliError("--application-id must be 1 or more")
    if bool(args.gateway_api) != bool(args.gateway_token_file):
        raise CliError("--gateway-api and --gateway-token-file go together")
    inv = load_inventory(args.inventory)
    nodes = inv.select(args.dev_eui)
    if not nodes:
        raise CliError(f"{inv.path} lists no nodes")
    secrets = _secrets_of(args)
    progress = _progress("registering in OS2iot")
    with progress, Os2iot(url, key, timeout_s=args.timeout) as client:
        task = progress.add_task("", total=len(nodes))
        report = register_os2iot(
            nodes,
            secrets,
            client,
            application_id=application_id,
            profiles=profiles,
            advance=lambda name: progress.update(task, advance=1, description=name),
        )
    if args.gateway_api:
        with GatewayRegistry(
            args.gateway_api, _read_token(args.gateway_token_file, "--gateway-token-file")
        ) as registry:
            gateway = register_batch(
                nodes, secrets, None, tenant_id="", application_id="", codec_script="",
                registry=registry,
            )  # fmt: skip
        report.outcomes.update(gateway.outcomes)
        report.failures += gateway.failures
    print_report(report)
    if report.failures:
        print(
            f"citypack: error: {len(report.failures)} node(s) failed; fix the cause and run the "
            "same command again (it skips what is done)",
            file=sys.stderr,
        )
        return 1
    return 0


def decommission_parser(commands: Any, inventory_args: Any) -> None:
    p = commands.add_parser(
        "decommission", help="delete nodes from OS2iot (and so from its ChirpStack)"
    )
    inventory_args(p, secrets=False)
    p.add_argument("--os2iot", metavar="URL", required=True, help="OS2iot's API")
    p.add_argument("--api-key-file", type=Path, required=True, help="file with the API key")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--dev-eui", action="append", help="these nodes (repeatable)")
    which.add_argument("--all", action="store_true", help="every node of the inventory")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per call (default 15)")
    p.set_defaults(func=run_decommission)


def run_decommission(args: argparse.Namespace) -> int:
    from tools.provision.inventory import load_inventory
    from tools.provision.os2iot import Os2iot, decommission_os2iot
    from tools.provision.register import print_report

    url, key = _os2iot_args(args)
    inv = load_inventory(args.inventory)
    nodes = inv.select(None if args.all else args.dev_eui)
    if not nodes:
        raise CliError(f"{inv.path} lists no nodes")
    progress = _progress("decommissioning")
    with progress, Os2iot(url, key, timeout_s=args.timeout) as client:
        task = progress.add_task("", total=len(nodes))
        report = decommission_os2iot(
            nodes, client, advance=lambda name: progress.update(task, advance=1, description=name)
        )
    print_report(report)
    return 0
