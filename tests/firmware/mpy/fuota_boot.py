"""Harness: boot a node's filesystem the way boot.py does, and say what runs (MicroPython/CPython).

Usage: ``fuota_boot.py ROOT [confirm]``. Runs fwslot.select (one boot: counts a try against an
unconfirmed set, rolls back past the limit), imports ``pkg.mod`` from the chosen set, encodes the
``device_info`` uplink the app would send with the version fwslot reports, and with ``confirm``
marks the set good. Prints one JSON line.
"""

import json
import sys
from binascii import hexlify

import fwslot

root = sys.argv[1]
lib = fwslot.select(root)
sys.path.insert(0, lib)
import pkg.mod  # noqa: E402  (from the selected set)
from apps.node import FIRMWARE_VERSION, Node  # noqa: E402


class Link:
    sent = []

    def set_receiver(self, cb):
        pass

    async def send(self, fport, data, confirmed):
        Link.sent.append((fport, hexlify(data).decode()))
        return True, []


class Clock:
    def alarm(self):
        return None


if len(sys.argv) > 2 and sys.argv[2] == "confirm":
    fwslot.confirm(root)
node = Node(Link(), Clock(), "lamp", version=fwslot.version(root, FIRMWARE_VERSION))
coro = node.device_info("power_on", 0)
try:
    coro.send(None)
except StopIteration:
    pass
print(json.dumps({"lib": lib, "value": pkg.mod.VALUE, "state": fwslot.state(root),
                  "device_info": Link.sent[0]}))  # fmt: skip
