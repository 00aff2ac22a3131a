"""`citypack fuota keygen|bundle|start|status|cancel`: signing keys, signed delta bundles, and
campaigns on a running gateway (tools/fuota_api.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tools import fuota
from tools.errors import CliError
from tools.fuota_api import FINAL, Client, progress_line, read_token


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "fuota", help="firmware updates over the air: signing keys and update bundles"
    )
    fsub = parser.add_subparsers(dest="fuota_command", metavar="ACTION", required=True)
    kg = fsub.add_parser("keygen", help="make an Ed25519 signing key (PEM, mode 0600)")
    kg.add_argument("--key", type=Path, required=True, help="private key file to create")
    kg.set_defaults(func=run_keygen)
    b = fsub.add_parser(
        "bundle", help="build and sign a delta bundle between two `citypack firmware build`s"
    )
    b.add_argument("--from", dest="old", type=Path, required=True, help="previous build dir")
    b.add_argument("--to", dest="new", type=Path, required=True, help="new build dir")
    b.add_argument("--from-version", required=True, help="version the nodes run now")
    b.add_argument("--version", required=True, help="version of the new build (<= 16 chars)")
    b.add_argument("--key", type=Path, required=True, help="Ed25519 private key (PEM)")
    b.add_argument("--out", type=Path, required=True, help="bundle file to write")
    b.set_defaults(func=run_bundle)
    st = fsub.add_parser("start", help="start a campaign: a bundle to a registry group")
    _api_args(st)
    st.add_argument("--group", required=True, help="registry group (or street) to update")
    st.add_argument("--bundle", type=Path, required=True, help="bundle from `fuota bundle`")
    st.add_argument("--kind", choices=["bin", "lamp"], help="only the group's devices of a kind")
    st.add_argument("--wait", action="store_true", help="follow the progress to the end")
    st.set_defaults(func=run_start)
    ss = fsub.add_parser("status", help="a campaign's progress and every device's state")
    _api_args(ss)
    ss.add_argument("campaign", nargs="?", help="campaign id (none: list the campaigns)")
    ss.add_argument("--wait", action="store_true", help="follow the progress to the end")
    ss.add_argument("--json", action="store_true", help="print the gateway's JSON")
    ss.set_defaults(func=run_status)
    sc = fsub.add_parser("cancel", help="cancel a running campaign")
    _api_args(sc)
    sc.add_argument("campaign", help="campaign id")
    sc.set_defaults(func=run_cancel)


def _api_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--api", default="http://127.0.0.1:8080", metavar="URL", help="the gateway's base URL"
    )
    p.add_argument(
        "--token-file", type=Path, required=True, metavar="FILE", help="the gateway API token"
    )
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="per request")


def _client(args: argparse.Namespace) -> Client:
    return Client(args.api, read_token(args.token_file), args.timeout)


def _devices(doc: dict[str, Any]) -> None:
    for d in doc.get("devices", []):
        frags = f"{d['fragments_received']} fragments"
        if d.get("fragments_missing") is not None:
            frags += f", {d['fragments_missing']} missing"
        why = f" ({d['error']})" if d.get("error") else ""
        print(f"  {d['dev_eui']} {d['state']:<16} {frags}, version {d['version']}{why}")


def run_start(args: argparse.Namespace) -> int:
    try:
        data = args.bundle.read_bytes()
    except OSError as exc:
        raise CliError(f"--bundle: cannot read {args.bundle}: {exc.strerror}") from None
    client = _client(args)
    doc = client.start(args.group, data, args.kind)
    print(f"campaign {doc['id']} started: {len(doc['devices'])} devices, bundle {doc['version']}")
    if not args.wait:
        return 0
    doc = client.follow(doc["id"], print)
    _devices(doc)
    return 0 if doc["state"] == "done" and doc["counts"].get("failed", 0) == 0 else 1


def run_status(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.campaign is None:
        for c in client.all():
            print(progress_line(c) + f"  [{c['id']}]")
        return 0
    doc = client.follow(args.campaign, print) if args.wait else client.get(args.campaign)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    if not args.wait:
        print(progress_line(doc))
    _devices(doc)
    return 0 if doc["state"] not in FINAL or doc["state"] == "done" else 1


def run_cancel(args: argparse.Namespace) -> int:
    doc = _client(args).cancel(args.campaign)
    print(progress_line(doc))
    return 0


def run_keygen(args: argparse.Namespace) -> int:
    public = fuota.keygen(args.key)
    print(f"private key: {args.key} (keep it off the nodes)")
    print(f"public key for config.json fuota_public_key: {public}")
    return 0


def run_bundle(args: argparse.Namespace) -> int:
    key = fuota.load_private_key(args.key)
    data, delta = fuota.build_delta(args.old, args.new, key, args.version, args.from_version)
    args.out.write_bytes(data)
    print(
        f"bundle {args.out}: {len(data)} bytes, {args.from_version} -> {args.version}, "
        f"{len(delta.changed)} module(s) changed, {len(delta.deleted)} deleted, "
        f"{delta.unchanged} unchanged"
    )
    for p in delta.changed:
        print(f"  + {p}")
    for p in delta.deleted:
        print(f"  - {p}")
    print(f"signed by public key {fuota.public_key_hex(key)}")
    return 0
