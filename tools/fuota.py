"""Build and sign FUOTA update bundles from `citypack firmware build` output (the CLI's logic).

A *delta* bundle holds only the modules whose bytes changed between a previous build and a new
one (compared by the SHA-256 in each build's ``manifest.json``, tools/firmware.py), plus the paths
the new build no longer has. Paths become relative to the module set's root (``lib/`` stripped),
as the node stages them (firmware/lib/fuota/update.py). ``boot.py``, ``main.py`` and
``fwslot.mpy`` are the boot path that rolls a bad update back, so a bundle never carries them:
a change there is refused with a clear error (flash the node instead).

Keys: an Ed25519 private key in a PEM file (PKCS#8, unencrypted), made by :func:`keygen` with
``cryptography``; the node's config carries the matching public key (``fuota_public_key``, 64 hex
digits, firmware/lib/nodeconfig.py). The private key is read, used and never printed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol.errors import EncodeError
from protocol.fuota import bundle as fb
from tools.errors import CliError
from tools.firmware import MANIFEST_NAME

BOOT_PATH = ("boot.py", "main.py", "lib/fwslot.mpy")

__all__ = ["BOOT_PATH", "Delta", "build_delta", "keygen", "load_private_key", "public_key_hex"]


@dataclass(frozen=True, slots=True)
class Delta:
    changed: tuple[str, ...]  # build paths ("lib/...")
    deleted: tuple[str, ...]
    unchanged: int


def _files(build: Path) -> dict[str, str]:
    path = Path(build) / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(f["path"]): str(f["sha256"]) for f in doc["files"]}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CliError(f"{path}: not a `citypack firmware build` manifest ({exc})") from exc


def diff(old: Path, new: Path) -> Delta:
    a = _files(old)
    b = _files(new)
    changed = tuple(sorted(p for p, h in b.items() if a.get(p) != h))
    deleted = tuple(sorted(p for p in a if p not in b))
    for p in changed + deleted:
        if p in BOOT_PATH or not p.startswith("lib/"):
            raise CliError(
                f"{p} changed: the boot path cannot be updated over the air; flash the node"
            )
    return Delta(changed, deleted, len(b) - len(changed))


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        # the message names the file, never its contents
        raise CliError(f"{path}: cannot read an unencrypted Ed25519 PEM private key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise CliError(f"{path}: the key is not an Ed25519 key")
    return key


def public_key_hex(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def keygen(path: Path) -> str:
    """Write a new private key to ``path`` (mode 0600, never overwritten); the public key hex."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise CliError(f"{path} exists: keygen never overwrites a key") from exc
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    return public_key_hex(key)


def build_delta(
    old: Path, new: Path, key: Ed25519PrivateKey, version: str, from_version: str
) -> tuple[bytes, Delta]:
    """The signed delta bundle from build ``old`` to build ``new``."""
    delta = diff(old, new)
    if not delta.changed and not delta.deleted:
        raise CliError("the two builds are identical: nothing to update")
    modules = [fb.Module(p[len("lib/") :], (Path(new) / p).read_bytes()) for p in delta.changed]
    deleted = [p[len("lib/") :] for p in delta.deleted]
    try:
        data = fb.build(version, from_version, modules, deleted, key.sign)
    except EncodeError as exc:
        raise CliError(str(exc)) from exc
    return data, delta
