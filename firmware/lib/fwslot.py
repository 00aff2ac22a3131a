"""Which set of modules a node boots, the atomic switch to a new set, and rolling back.

Layout on the node's filesystem (under ``root``, "/" on a board)::

    lib/                 the factory set, as `make firmware` installs it (never modified)
    fw/a/, fw/b/         staged sets: complete copies of lib/ with an update's modules replaced
    fw/active.json       the pointer: {"slot", "version", "previous", "previous_version",
                         "tries", "confirmed"[, "rolled_back"]}

boot.py calls :func:`select` before anything else is imported; it returns the directory to put
on ``sys.path`` in place of ``/lib``. A new set starts unconfirmed: every boot while unconfirmed
counts a try, and past ``max_tries`` the pointer goes back to the previous set (and records the
version that failed). The running code calls :func:`confirm` once it has come up (joined and
heard by the network). Every change of the pointer writes a temporary file and renames it over
``fw/active.json``: the rename is the atomic step on LittleFS and POSIX alike, so a power cut
leaves either the old pointer or the new one.

This module lives in the factory ``lib/`` and runs before any slot is chosen, so an update can
never replace the code that rolls it back.
"""

import json
import os

POINTER = "fw/active.json"
FACTORY = "lib"
MAX_TRIES = 3


def _read(root):
    try:
        with open(root + POINTER) as f:
            p = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(p, dict) or p.get("slot") not in ("a", "b", FACTORY):
        return None
    return p


def _write(root, p):
    tmp = root + POINTER + ".tmp"
    with open(tmp, "w") as f:
        json.dump(p, f)
    os.rename(tmp, root + POINTER)


def slot_dir(root, slot):
    return root + (FACTORY if slot == FACTORY else "fw/" + slot)


def state(root):
    """The pointer as a dict, or None when the factory set runs and no update was applied."""
    return _read(root)


def active_slot(root):
    p = _read(root)
    return FACTORY if p is None else p["slot"]


def version(root, default):
    p = _read(root)
    return default if p is None else p.get("version", default)


def select(root="/", max_tries=MAX_TRIES):
    """Count this boot against an unconfirmed set, roll back past ``max_tries``; the lib dir."""
    p = _read(root)
    if p is None:
        return root + FACTORY
    if not p.get("confirmed"):
        tries = p.get("tries", 0) + 1
        if tries > max_tries:
            p = {
                "slot": p.get("previous", FACTORY),
                "version": p.get("previous_version"),
                "confirmed": True,
                "tries": 0,
                "rolled_back": p.get("version"),
            }
        else:
            p["tries"] = tries
        _write(root, p)
    return slot_dir(root, p["slot"])


def switch(root, slot, new_version, running_version):
    """Point the next boot at ``slot``, unconfirmed, with the running set to fall back to."""
    p = _read(root)
    prev = FACTORY if p is None else p["slot"]
    _write(
        root,
        {
            "slot": slot,
            "version": new_version,
            "previous": prev,
            "previous_version": running_version,
            "tries": 0,
            "confirmed": False,
        },
    )


def confirm(root):
    """The running set came up: keep it. Returns True when this changed the pointer."""
    p = _read(root)
    if p is None or p.get("confirmed"):
        return False
    p["confirmed"] = True
    p["tries"] = 0
    _write(root, p)
    return True
