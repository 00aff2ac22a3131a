"""A signed firmware update bundle: the file a FUOTA campaign delivers (reading it on the node).

Layout (written by ``citypack fuota bundle``, protocol/fuota/bundle.py; all of it is on the air)::

    "CPFW" 0x01                  magic and format version (5 bytes)
    manifest length              u16 little-endian
    manifest                     UTF-8 JSON, sorted keys, no spaces:
                                 {"delete": [path...], "format": 1, "from_version": str,
                                  "modules": [{"path", "sha256", "size"}...], "version": str}
    signature                    Ed25519 (RFC 8032) over every byte before it (64 bytes)
    module data                  the modules' bytes, concatenated in manifest order

Paths are relative to the module set's root (``apps/lamp_node.mpy``, ``lorawan/mac.mpy``), made of
``a-z 0-9 _ . /`` only, no ``..``, ending in ``.mpy``. The node verifies the signature with the
public key from its config before it believes one byte of the manifest, then every module's
SHA-256 while it copies it out (fuota.update). Any problem is a :class:`BundleError` whose
``reason`` is one word for counters and status reports.
"""

import json

from fuota.ed25519 import verify

MAGIC = b"CPFW\x01"
_HEAD = 7  # magic + length
_SIG = 64
MAX_MANIFEST = 4096
MAX_MODULES = 64
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_./"


class BundleError(ValueError):
    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def valid_path(path):
    if not isinstance(path, str) or not path.endswith(".mpy") or len(path) > 96:
        return False
    if path.startswith("/") or ".." in path or "//" in path:
        return False
    for ch in path:
        if ch not in _PATH_CHARS:
            return False
    return True


def _text(v, limit):
    return isinstance(v, str) and 0 < len(v) <= limit


class Bundle:
    """A verified bundle in a flash file: ``manifest`` (dict) and where each module's data is."""

    def __init__(self, manifest, data_offset):
        self.manifest = manifest
        self.version = manifest["version"]
        self.from_version = manifest["from_version"]
        self.modules = manifest["modules"]
        self.delete = manifest["delete"]
        self.data_offset = data_offset


def open_verified(flash, size, public_key):
    """Read the header from ``flash`` (hal.flashfile.FlashFile), check the signature and shape."""
    if size < _HEAD + 2 + _SIG:
        raise BundleError("short")
    head = bytearray(_HEAD)
    flash.read_into(0, head, _HEAD)
    if bytes(head[:5]) != MAGIC:
        raise BundleError("magic")
    mlen = head[5] | (head[6] << 8)
    if mlen == 0 or mlen > MAX_MANIFEST or _HEAD + mlen + _SIG > size:
        raise BundleError("short")
    signed = bytearray(_HEAD + mlen)
    flash.read_into(0, signed, _HEAD + mlen)
    sig = bytearray(_SIG)
    flash.read_into(_HEAD + mlen, sig, _SIG)
    if not verify(public_key, signed, sig):
        raise BundleError("signature")
    try:
        m = json.loads(bytes(signed[_HEAD:]).decode())
    except (ValueError, UnicodeError):
        raise BundleError("manifest")
    if not isinstance(m, dict) or m.get("format") != 1:
        raise BundleError("manifest")
    mods = m.get("modules")
    dels = m.get("delete", [])
    if not _text(m.get("version"), 16) or not _text(m.get("from_version"), 16):
        raise BundleError("manifest")
    if not isinstance(mods, list) or not isinstance(dels, list) or len(mods) > MAX_MODULES:
        raise BundleError("manifest")
    total = 0
    for e in mods:
        if not isinstance(e, dict) or not valid_path(e.get("path")):
            raise BundleError("manifest")
        sz = e.get("size")
        digest = e.get("sha256")
        if not isinstance(sz, int) or sz < 0 or not isinstance(digest, str) or len(digest) != 64:
            raise BundleError("manifest")
        total += sz
    for d in dels:
        if not valid_path(d):
            raise BundleError("manifest")
    m["delete"] = dels
    offset = _HEAD + mlen + _SIG
    if offset + total != size:
        raise BundleError("size")
    return Bundle(m, offset)
