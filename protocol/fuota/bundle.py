"""The signed FUOTA update bundle (format in firmware/lib/fuota/bundle.py, which reads it on nodes).

::

    b"CPFW\\x01" | u16 LE manifest length | manifest (JSON, sorted keys, compact)
    | Ed25519 signature over every byte before it (64) | module bytes in manifest order

This module builds the unsigned header and the bundle around a signature, and parses a bundle
back (the gateway shows what a bundle holds; tests check the node's view). Signing itself is done
by the caller with a private key (tools/fuota.py, ``cryptography``): the protocol package never
holds one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from protocol.errors import DecodeError, EncodeError

__all__ = [
    "FORMAT",
    "MAGIC",
    "Bundle",
    "Module",
    "build",
    "parse",
    "valid_path",
]

MAGIC = b"CPFW\x01"
FORMAT = 1
MAX_MANIFEST = 4096  # the node refuses larger manifests (firmware/lib/fuota/bundle.py)
MAX_MODULES = 64
MAX_VERSION = 16  # device_info.firmware_version is at most 16 characters
_PATH = re.compile(r"^[a-z0-9_./]{1,96}$")
_SIG = 64


def valid_path(path: str) -> bool:
    return bool(
        _PATH.match(path)
        and path.endswith(".mpy")
        and not path.startswith("/")
        and ".." not in path
        and "//" not in path
    )


@dataclass(frozen=True, slots=True)
class Module:
    path: str
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    version: str
    from_version: str
    modules: tuple[Module, ...]
    delete: tuple[str, ...]
    manifest: dict[str, Any]
    signed: bytes  # header + manifest: what the signature covers
    signature: bytes


def _manifest(
    version: str, from_version: str, modules: Sequence[Module], delete: Sequence[str]
) -> bytes:
    for name, v in (("version", version), ("from_version", from_version)):
        if not 0 < len(v) <= MAX_VERSION:
            raise EncodeError(f"{name} must be 1..{MAX_VERSION} characters")
    if len(modules) > MAX_MODULES:
        raise EncodeError(f"at most {MAX_MODULES} modules per bundle")
    for p in [m.path for m in modules] + list(delete):
        if not valid_path(p):
            raise EncodeError(f"module path {p!r} is not a-z0-9_./ ending in .mpy")
    doc = {
        "delete": list(delete),
        "format": FORMAT,
        "from_version": from_version,
        "modules": [{"path": m.path, "sha256": m.sha256, "size": len(m.data)} for m in modules],
        "version": version,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    if len(text) > MAX_MANIFEST:
        raise EncodeError(f"manifest is {len(text)} bytes, over {MAX_MANIFEST}")
    return text


def build(
    version: str,
    from_version: str,
    modules: Sequence[Module],
    delete: Sequence[str],
    sign: Callable[[bytes], bytes],
) -> bytes:
    """The bundle; ``sign(message) -> 64-byte Ed25519 signature`` signs the header."""
    manifest = _manifest(version, from_version, modules, delete)
    signed = MAGIC + len(manifest).to_bytes(2, "little") + manifest
    signature = sign(signed)
    if len(signature) != _SIG:
        raise EncodeError("an Ed25519 signature is 64 bytes")
    return signed + signature + b"".join(m.data for m in modules)


def parse(data: bytes) -> Bundle:
    """Split a bundle into its parts and check hashes and sizes (not the signature)."""
    if len(data) < 7 + _SIG or data[:5] != MAGIC:
        raise DecodeError("not a citypack FUOTA bundle (magic)")
    mlen = int.from_bytes(data[5:7], "little")
    if not 0 < mlen <= MAX_MANIFEST or 7 + mlen + _SIG > len(data):
        raise DecodeError("bundle manifest length out of range")
    signed = bytes(data[: 7 + mlen])
    try:
        doc = json.loads(signed[7:])
        entries = doc["modules"]
        at = 7 + mlen + _SIG
        modules = []
        for e in entries:
            size = int(e["size"])
            chunk = bytes(data[at : at + size])
            if len(chunk) != size or hashlib.sha256(chunk).hexdigest() != e["sha256"]:
                raise DecodeError(f"module {e['path']} does not match its manifest entry")
            modules.append(Module(str(e["path"]), chunk))
            at += size
        if at != len(data):
            raise DecodeError("bundle has bytes after its last module")
        return Bundle(
            version=str(doc["version"]),
            from_version=str(doc["from_version"]),
            modules=tuple(modules),
            delete=tuple(str(d) for d in doc.get("delete", [])),
            manifest=doc,
            signed=signed,
            signature=bytes(data[7 + mlen : 7 + mlen + _SIG]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(f"bundle manifest is malformed: {exc}") from exc
