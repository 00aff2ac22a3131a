"""Runs before main.py on every boot: firmware/lib (or an updated set, fwslot) on sys.path.

Deliberately small: a bin node wakes from deep sleep through here every measurement.
"""

import sys

if "/lib" not in sys.path:
    sys.path.append("/lib")
try:  # an updated module set (FUOTA) replaces /lib; fwslot counts boots and rolls back
    import fwslot

    _lib = fwslot.select("/")
    if _lib != "/lib":
        sys.path[sys.path.index("/lib")] = _lib
except Exception:  # no pointer, or a broken one: the factory set runs
    pass
