"""Runs before main.py on every boot: firmware/lib on the import path, nothing else.

Deliberately small: a bin node wakes from deep sleep through here every measurement.
"""

import sys

if "/lib" not in sys.path:
    sys.path.append("/lib")
