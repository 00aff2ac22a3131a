"""Applying a verified update bundle: stage a complete module set beside the running one, switch.

Steps (each failure leaves the running set and the pointer untouched and returns its reason):

1. fuota.bundle.open_verified: magic, sizes, the Ed25519 signature with the node's public key,
   the manifest's shape.
2. ``from_version`` must be the version running now: a delta applies to its own base only.
3. Stage: the other slot (``fw/a`` or ``fw/b``, never the running one) is emptied and filled with
   a copy of the running set, then each module of the bundle is written over it while its
   SHA-256 is computed; a mismatch aborts. Modules the manifest deletes are removed from the copy.
   A complete copy, not an overlay: MicroPython resolves a package from the first ``sys.path``
   entry that has it, so a package must be whole in one directory.
4. fwslot.switch: the pointer names the new slot, unconfirmed; the boot counter there rolls back
   to the running set if the new one does not come up (fwslot).
"""

import os
from hashlib import sha256  # every MicroPython port has it

import fwslot
from hal.flashfile import FlashFile

from fuota.bundle import BundleError, open_verified

_CHUNK = 512


def _is_dir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _mkdirs(path):
    parts = path.split("/")
    cur = ""
    for i, part in enumerate(parts):
        cur = part if i == 0 else cur + "/" + part
        if cur and not _exists(cur):
            os.mkdir(cur)


def rmtree(path):
    if not _exists(path):
        return
    if _is_dir(path):
        for name in os.listdir(path):
            rmtree(path + "/" + name)
        os.rmdir(path)
    else:
        os.remove(path)


def _copy_tree(src, dst, buf):
    _mkdirs(dst)
    for name in os.listdir(src):
        s = src + "/" + name
        d = dst + "/" + name
        if _is_dir(s):
            _copy_tree(s, d, buf)
        else:
            with open(s, "rb") as fi, open(d, "wb") as fo:
                while True:
                    n = fi.readinto(buf)
                    if not n:
                        break
                    fo.write(memoryview(buf)[:n])


def _hex(digest):
    return "".join("%02x" % b for b in digest)


def apply(root, bundle_path, size, public_key, running_version):
    """(ok, reason, version): stage and switch to the bundle at ``bundle_path`` (``size`` bytes)."""
    flash = None
    staged = None
    try:
        flash = FlashFile(bundle_path, create=False)
        b = open_verified(flash, size, public_key)
        if b.from_version != running_version:
            return False, "wrong_base", b.version
        if b.version == running_version:
            return False, "same_version", b.version
        cur = fwslot.active_slot(root)
        slot = "b" if cur == "a" else "a"
        staged = fwslot.slot_dir(root, slot)
        rmtree(staged)
        buf = bytearray(_CHUNK)
        _copy_tree(fwslot.slot_dir(root, cur), staged, buf)
        off = b.data_offset
        for e in b.modules:
            path = staged + "/" + e["path"]
            _mkdirs(path[: path.rfind("/")])
            h = sha256()
            left = e["size"]
            with open(path, "wb") as out:
                while left > 0:
                    n = _CHUNK if left > _CHUNK else left
                    flash.read_into(off, buf, n)
                    chunk = memoryview(buf)[:n]
                    h.update(chunk)
                    out.write(chunk)
                    off += n
                    left -= n
            if _hex(h.digest()) != e["sha256"]:
                raise BundleError("module_hash")
        for d in b.delete:
            p = staged + "/" + d
            if _exists(p) and not _is_dir(p):
                os.remove(p)
        fwslot.switch(root, slot, b.version, running_version)
        staged = None  # switched: keep it
        return True, "applied", b.version
    except BundleError as exc:
        return False, exc.reason, None
    except (OSError, MemoryError):
        return False, "storage", None
    finally:
        if flash is not None:
            flash.close()
        if staged is not None:
            try:
                rmtree(staged)
            except OSError:
                pass
