"""`citypack provision …`: from a new board to a registered, flashed, labelled, checked node.

Subcommands (tools/provision/README.md walks a technician through them):

- ``new``       add nodes to a batch inventory, AppKeys into the 0600 secrets file
- ``export``    OS2iot CSV, The Things Stack CSV or ChirpStack JSON from the inventory
- ``register``  device profiles, devices and keys in ChirpStack (gRPC) or through OS2iot's API,
                and the gateway registry
- ``decommission`` delete nodes through OS2iot's API
- ``deploy``    firmware bundle, /config.json and keys onto a board (``--port``) or a directory
- ``label``     TR005 QR labels (SVG, PNG, printable sheet)
- ``scan``      parse a scanned TR005 string and find the node in an inventory
- ``verify``    the install check: join and first uplink, signal and link margin, pass or fail

Keys are printed only by ``new --show-keys``; every other output names a node by DevEUI and name.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.commands.argtypes import host_port_text, http_url, uuid_text
from tools.commands.provision_os2iot import (
    add_os2iot_options,
    application_id_text,
    decommission_parser,
    run_register_os2iot,
)
from tools.errors import CliError
from tools.provision import exports, inventory, labels
from tools.provision.inventory import (
    BOARDS,
    KINDS,
    REGIONS,
    Secrets,
    default_secrets_path,
    load_inventory,
    load_secrets,
    save_inventory,
    save_secrets,
    write_atomic,
)


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "provision",
        help="keys, inventory, registration, flashing, labels and the install check",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    commands = parser.add_subparsers(dest="provision_command", metavar="STEP", required=True)
    _new(commands)
    _export(commands)
    _register(commands)
    _deploy(commands)
    _label(commands)
    _scan(commands)
    _verify(commands)
    decommission_parser(commands, _inventory_args)


def _inventory_args(parser: argparse.ArgumentParser, *, secrets: bool = True) -> None:
    parser.add_argument(
        "--inventory", type=Path, required=True, help="the batch inventory (.toml or .csv)"
    )
    if secrets:
        parser.add_argument(
            "--secrets",
            type=Path,
            help="the secrets file (default: <inventory stem>.secrets.toml beside it)",
        )
        parser.add_argument(
            "--fix-permissions",
            action="store_true",
            help="chmod 600 a secrets file whose mode lets others read it, instead of refusing",
        )


def _secrets_of(args: argparse.Namespace, *, missing_ok: bool = False) -> Secrets:
    path = args.secrets or default_secrets_path(args.inventory)
    return load_secrets(path, missing_ok=missing_ok, fix_permissions=args.fix_permissions)


def _read_token(path: Path, option: str) -> str:
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise CliError(f"{option}: cannot read {path}: {exc.strerror}") from None
    if not token or any(c.isspace() for c in token):
        raise CliError(f"{option}: {path} must hold one token on one line")
    return token


# --- new ---------------------------------------------------------------------------------------


def _new(commands: Any) -> None:
    p = commands.add_parser("new", help="add nodes to a batch inventory with fresh keys")
    p.add_argument("--kind", choices=KINDS, required=True)
    _inventory_args(p)
    p.add_argument("--count", type=int, default=1, help="how many nodes (default 1)")
    p.add_argument("--name-prefix", help="names are PREFIX-0001… (default: the kind)")
    p.add_argument("--street", help="street the nodes stand in")
    p.add_argument("--group", help="group (district, route, circuit)")
    p.add_argument("--latitude", type=float)
    p.add_argument("--longitude", type=float)
    p.add_argument("--board", choices=BOARDS, default="heltec-v3")
    p.add_argument("--region", choices=REGIONS, default="EU868")
    p.add_argument("--join-eui", default=inventory.DEFAULT_JOIN_EUI, help="16 hex digits")
    p.add_argument("--serial", help="serial number (only with --count 1; default: the name)")
    p.add_argument(
        "--port", help="serial port of an attached ESP32: its MAC gives the DevEUI (esptool)"
    )
    p.add_argument("--show-keys", action="store_true", help="also print the new AppKeys")
    p.set_defaults(func=run_new)


def run_new(args: argparse.Namespace) -> int:
    if args.serial and args.count != 1:
        raise CliError("--serial names one node: use it with --count 1")
    inv = load_inventory(args.inventory, missing_ok=True)
    secrets = _secrets_of(args, missing_ok=True)
    dev_euis = None
    if args.port:
        if args.count != 1:
            raise CliError("--port reads one attached board: use --count 1")
        dev_euis = [inventory.read_board_dev_eui(args.port)]
    new = inventory.add_nodes(
        inv,
        secrets,
        kind=args.kind,
        count=args.count,
        name_prefix=args.name_prefix,
        dev_euis=dev_euis,
        street=args.street,
        group=args.group,
        latitude=args.latitude,
        longitude=args.longitude,
        board=args.board,
        region=args.region,
        join_eui=args.join_eui,
        serial=args.serial,
    )
    # keys first: an inventory entry without its key would be a node nobody can ever join
    save_secrets(secrets, fix_permissions=args.fix_permissions)
    save_inventory(inv)
    for node in new:
        line = (
            f"{node.name}  dev_eui {node.dev_eui}  join_eui {node.join_eui}  serial {node.serial}"
        )
        if args.show_keys:
            line += f"  app_key {secrets.app_keys[node.dev_eui].hex()}"
        print(line)
    print(
        f"{len(new)} new {args.kind} node(s); inventory {inv.path} ({len(inv.nodes)} nodes), "
        f"keys in {secrets.path} (mode 0600)"
    )
    return 0


# --- export ------------------------------------------------------------------------------------


def _export(commands: Any) -> None:
    p = commands.add_parser("export", help="OS2iot / The Things Stack CSV or ChirpStack JSON")
    p.add_argument("--format", choices=exports.FORMATS, required=True)
    _inventory_args(p)
    p.add_argument("--output", type=Path, help="file to write (required when keys are included)")
    p.add_argument("--no-keys", action="store_true", help="leave the AppKey columns empty")
    p.add_argument(
        "--os2iot-profile",
        action="append",
        default=[],
        metavar="KIND=UUID",
        help="ChirpStack device-profile UUID OS2iot attaches, per kind (repeat for bin and lamp)",
    )
    p.add_argument("--application-id", type=uuid_text, help="ChirpStack application (JSON format)")
    p.add_argument(
        "--device-profile-id",
        action="append",
        default=[],
        metavar="[KIND=]UUID",
        help="ChirpStack device profile for the JSON format: one UUID for every node, or "
        "bin=UUID / lamp=UUID per kind (repeatable)",
    )
    p.add_argument("--dev-eui", action="append", help="only these nodes (repeatable)")
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    if args.device_profile_id and args.format != "chirpstack":
        raise CliError("--device-profile-id is for --format chirpstack (OS2iot: --os2iot-profile)")
    inv = load_inventory(args.inventory)
    nodes = inv.select(args.dev_eui)
    secrets = None if args.no_keys else _secrets_of(args)
    if secrets is not None and args.output is None:
        raise CliError(
            "this export carries AppKeys: write it to a file with --output (or --no-keys)"
        )
    text = exports.export(
        args.format,
        nodes,
        secrets,
        profiles={
            **exports.parse_profile_map(args.os2iot_profile),
            **exports.parse_device_profiles(args.device_profile_id, {n.kind for n in nodes}),
        },
        application_id=args.application_id or "",
    )
    if args.output is None:
        sys.stdout.write(text)
        return 0
    write_atomic(args.output, text.encode(), mode=0o600 if secrets is not None else 0o644)
    print(f"wrote {len(nodes)} node(s) to {args.output} ({args.format})")
    if secrets is not None:
        print(
            f"warning: {args.output} holds {len(nodes)} AppKey(s) (mode 0600); import it, "
            "then delete it",
            file=sys.stderr,
        )
    return 0


# --- register ----------------------------------------------------------------------------------


def _register(commands: Any) -> None:
    p = commands.add_parser(
        "register", help="create profiles, devices and keys in ChirpStack and the gateway registry"
    )
    _inventory_args(p)
    p.add_argument(
        "--chirpstack", type=host_port_text, metavar="HOST:PORT", help="ChirpStack gRPC API"
    )
    p.add_argument("--api-token-file", type=Path, help="file with the ChirpStack API token")
    p.add_argument(
        "--application-id",
        type=application_id_text,
        help="ChirpStack application UUID (with --os2iot: OS2iot's application number)",
    )
    p.add_argument("--tenant-id", type=uuid_text, help="ChirpStack tenant UUID (for the profiles)")
    p.add_argument(
        "--no-chirpstack",
        action="store_true",
        help="only the gateway registry (where OS2iot owns the ChirpStack devices)",
    )
    p.add_argument("--codec", type=Path, help="codec JS (default protocol/generated/…codec.js)")
    p.add_argument(
        "--gateway-api", type=http_url, metavar="URL", help="citypack gateway API base URL"
    )
    p.add_argument("--gateway-token-file", type=Path, help="file with the gateway API token")
    p.add_argument("--dev-eui", action="append", help="only these nodes (repeatable)")
    p.add_argument("--timeout", type=float, default=15.0, help="seconds per call (default 15)")
    add_os2iot_options(p)
    p.set_defaults(func=run_register)


def run_register(args: argparse.Namespace) -> int:
    from tools.provision.chirpstack import ChirpStack, read_codec
    from tools.provision.register import print_report, register_batch
    from tools.provision.registry import GatewayRegistry

    if args.os2iot or args.api_key_file:
        return run_register_os2iot(args)
    if bool(args.gateway_api) != bool(args.gateway_token_file):
        raise CliError("--gateway-api and --gateway-token-file go together")
    needed = ("chirpstack", "api_token_file", "application_id", "tenant_id")
    if args.no_chirpstack:
        if not args.gateway_api:
            raise CliError("--no-chirpstack leaves only the gateway registry: give --gateway-api")
    else:
        for name in needed:
            if not getattr(args, name):
                option = "--" + name.replace("_", "-")
                raise CliError(f"{option} is required (or --no-chirpstack)")
        if args.application_id.isdigit():
            raise CliError("--application-id: ChirpStack's is a UUID (a number is OS2iot's)")
    inv = load_inventory(args.inventory)
    nodes = inv.select(args.dev_eui)
    if not nodes:
        raise CliError(f"{inv.path} lists no nodes")
    registry = None
    if args.gateway_api:
        registry = GatewayRegistry(
            args.gateway_api, _read_token(args.gateway_token_file, "--gateway-token-file")
        )
    try:
        if args.no_chirpstack:
            report = register_batch(
                nodes,
                Secrets(default_secrets_path(args.inventory)),  # keys go to ChirpStack only
                None,
                tenant_id="",
                application_id="",
                codec_script="",
                registry=registry,
            )
        else:
            secrets = _secrets_of(args)
            codec = read_codec(args.codec)
            token = _read_token(args.api_token_file, "--api-token-file")
            with ChirpStack(args.chirpstack, token, timeout_s=args.timeout) as chirpstack:
                report = register_batch(
                    nodes,
                    secrets,
                    chirpstack,
                    tenant_id=args.tenant_id,
                    application_id=args.application_id,
                    codec_script=codec,
                    registry=registry,
                )
    finally:
        if registry is not None:
            registry.close()
    print_report(report)
    if report.failures:
        print(
            f"citypack: error: {len(report.failures)} node(s) failed; fix the cause and run the "
            "same command again (it skips what is done)",
            file=sys.stderr,
        )
        return 1
    return 0


# --- deploy ------------------------------------------------------------------------------------


def _deploy(commands: Any) -> None:
    p = commands.add_parser("deploy", help="write firmware, config and keys; read back and verify")
    p.add_argument("dev_eui", metavar="DEVEUI")
    _inventory_args(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial port of the board (mpremote)")
    where.add_argument("--target", type=Path, help="a directory laid out like the board's FS")
    p.add_argument("--bundle", type=Path, help="a built firmware bundle (default: build it now)")
    p.add_argument(
        "--flash-micropython",
        type=Path,
        metavar="FIRMWARE.bin",
        help="erase the board and flash this MicroPython image first (esptool; --port only)",
    )
    p.add_argument("--clean", action="store_true", help="empty --target DIR first")
    p.set_defaults(func=run_deploy)


def run_deploy(args: argparse.Namespace) -> int:
    from tools.provision import deploy

    if args.flash_micropython and not args.port:
        raise CliError("--flash-micropython needs a board: use it with --port")
    if args.flash_micropython and not args.flash_micropython.is_file():
        raise CliError(f"--flash-micropython: {args.flash_micropython} does not exist")
    if args.port:
        deploy.check_serial_port(args.port)  # before building anything
    inv = load_inventory(args.inventory)
    node = inv.find(args.dev_eui)
    app_key = _secrets_of(args).app_key(node.dev_eui)
    with tempfile.TemporaryDirectory(prefix="citypack-bundle-") as work:
        bundle = args.bundle or deploy.build_bundle(Path(work))
        if args.target is not None:
            result = deploy.deploy_to_dir(node, app_key, bundle, args.target, clean=args.clean)
        else:
            result = deploy.deploy_to_board(
                node, app_key, bundle, args.port, micropython_image=args.flash_micropython
            )
    print(
        f"deployed {node.name} ({node.dev_eui}) to {result.target}: "
        f"{len(result.files)} items written and verified by SHA-256"
    )
    return 0


# --- label, scan -------------------------------------------------------------------------------


def _label(commands: Any) -> None:
    p = commands.add_parser("label", help="TR005 QR labels (SVG/PNG, one per node, or a sheet)")
    _inventory_args(p, secrets=False)
    p.add_argument("--out", type=Path, default=Path("labels"), help="output directory")
    p.add_argument("--dev-eui", action="append", help="only these nodes (repeatable)")
    p.add_argument("--format", default="svg,png", help="comma-separated: svg, png (default both)")
    p.add_argument("--sheet", action="store_true", help="also a printable sheet.svg/sheet.html")
    p.add_argument("--vendor-id", default=labels.DEFAULT_VENDOR_ID, help="LoRa Alliance vendor id")
    p.set_defaults(func=run_label)


def run_label(args: argparse.Namespace) -> int:
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not formats or any(f not in ("svg", "png") for f in formats):
        raise CliError(f"--format: expected svg, png or svg,png, got {args.format!r}")
    vendor = args.vendor_id.upper()
    if len(vendor) != 4 or any(c not in "0123456789ABCDEF" for c in vendor):
        raise CliError(f"--vendor-id: expected 4 hex digits, got {args.vendor_id!r}")
    inv = load_inventory(args.inventory)
    nodes = inv.select(args.dev_eui)
    written = labels.write_labels(
        nodes, args.out, formats=formats, sheet=args.sheet, vendor_id=vendor, title=inv.path.stem
    )
    for node in nodes:
        print(f"{node.name}  {labels.tr005_for(node, vendor_id=vendor).to_string()}")
    print(f"wrote {len(written)} file(s) to {args.out}")
    return 0


def _scan(commands: Any) -> None:
    p = commands.add_parser("scan", help="parse a scanned TR005 QR string")
    p.add_argument("qr", metavar="TR005", help="the scanned text, LW:D0:…")
    p.add_argument("--inventory", type=Path, help="also show the node from this inventory")
    p.set_defaults(func=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    parsed = labels.TR005.parse(args.qr)
    doc: dict[str, Any] = {k: v for k, v in parsed.__dict__.items() if v}
    if args.inventory is not None:
        node = load_inventory(args.inventory).find(parsed.dev_eui)
        doc["node"] = {k: v for k, v in node.__dict__.items() if v not in (None, "")}
    print(json.dumps(doc, indent=2, ensure_ascii=False))
    return 0


# --- verify ------------------------------------------------------------------------------------


def _verify(commands: Any) -> None:
    p = commands.add_parser("verify", help="install check: join, first uplink, link margin")
    p.add_argument("dev_eui", metavar="DEVEUI")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait (default 300)")
    p.add_argument("--mqtt", metavar="URL", help="ChirpStack's MQTT broker, mqtt://host:port")
    p.add_argument(
        "--application-id", type=uuid_text, help="ChirpStack application UUID (default: any)"
    )
    p.add_argument("--require-join", action="store_true", help="fail unless a join is seen too")
    p.add_argument(
        "--gateway-api", type=http_url, metavar="URL", help="citypack gateway API base URL instead"
    )
    p.add_argument("--gateway-token-file", type=Path)
    p.add_argument("--region", choices=REGIONS, help="for DR → SF (default: inventory or EU868)")
    p.add_argument("--inventory", type=Path, help="take the region from this inventory")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    from tools.provision import verify

    if bool(args.mqtt) == bool(args.gateway_api):
        raise CliError("give exactly one of --mqtt URL or --gateway-api URL")
    if args.gateway_api and not args.gateway_token_file:
        raise CliError("--gateway-api needs --gateway-token-file")
    if not 0 < args.timeout <= 86_400:
        raise CliError("--timeout: expected 0 < seconds <= 86400")
    dev_eui = inventory.parse_eui(args.dev_eui, where="argument", field_name="DEVEUI")
    region = args.region
    if region is None and args.inventory is not None:
        region = load_inventory(args.inventory).find(dev_eui).region
    region = region or "EU868"
    if args.mqtt:
        verify.parse_mqtt_url(args.mqtt)
        print(f"waiting up to {args.timeout:g} s for {dev_eui} on {args.mqtt} …", file=sys.stderr)
        result = asyncio.run(
            verify.check_mqtt(
                args.mqtt,
                dev_eui,
                timeout_s=args.timeout,
                application_id=args.application_id,
                require_join=args.require_join,
                region=region,
            )
        )
    else:
        token = _read_token(args.gateway_token_file, "--gateway-token-file")
        result = verify.check_gateway_api(
            args.gateway_api, token, dev_eui, timeout_s=args.timeout, region=region
        )
    if args.json:
        print(json.dumps(_result_json(result), indent=2))
    else:
        print(result.render())
    return result.exit_code


def _result_json(result: Any) -> dict[str, Any]:
    uplink = result.uplink
    best = uplink.best if uplink is not None else None
    return {
        "dev_eui": result.dev_eui,
        "status": result.status.lower(),
        "joined": result.joined,
        "gateways": len(uplink.gateways) if uplink is not None else 0,
        "rssi": best.rssi if best else None,
        "snr": best.snr if best else None,
        "dr": uplink.dr if uplink is not None else None,
        "spreading_factor": uplink.spreading_factor if uplink is not None else None,
        "link_margin_db": best.margin_db if best else None,
        "reasons": result.reasons,
        "logs": result.logs,
    }
