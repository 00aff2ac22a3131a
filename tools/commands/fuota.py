"""`citypack fuota keygen|bundle`: signing keys and signed delta bundles for FUOTA campaigns."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tools import fuota


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
