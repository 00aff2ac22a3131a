# ruff: noqa: UP031 - MicroPython harness: %-format is what it has
"""Harness (MicroPython unix port, or CPython): replayed, forged and mis-addressed downlinks.

An ABP session receives one valid downlink, then, each many times:

- ``replay``: the exact accepted frame again, and correctly signed frames with an FCnt at or below
  the last accepted one (L2 1.0.4 §4.3.1.5);
- ``forged``: frames signed with a wrong NwkSKey, and the valid frame with its payload or MIC
  altered (L2 §4.4);
- ``misaddressed``: frames correctly signed with our keys but another DevAddr (L2 §4.3.1).

Each must be refused without raising, counted under its reason in ``mac.status.drops``, and leave
the session (State blob) byte-identical. A fresh valid frame is accepted at the end.

Usage: ``downlinks.py N``. Prints one JSON line; exits 1 on a failure.
"""

import json
import sys

from hal.radio import RxFrame
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan import frame
from lorawan.mac import Mac
from lorawan.session import Keys

NWK = bytes(range(0x20, 0x30))
APP = bytes(range(0x40, 0x50))
ADDR = 0x26011234


class NoNet:
    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        pass


def downlink(keys, fcnt, payload, addr=ADDR, fport=120):
    buf = bytearray(frame.BUF_SIZE)
    n = frame.build_data(buf, frame.UNCONFIRMED_DOWN, addr, 0, fcnt, b"", 0, fport, payload,
                         len(payload), keys)  # fmt: skip
    return bytes(buf[frame.B0 : frame.B0 + n])


def main():
    n = int(sys.argv[1])
    clock = VirtualClock()
    mac = Mac(SimRadio(clock, NoNet(), "s"), clock, DictStore(), DictStore(), region="EU868")
    mac.activate_abp(ADDR, NWK, APP)
    keys = Keys(NWK, APP)
    wrong = Keys(bytes(16), APP)
    failures = []
    accepted = downlink(keys, 50, b"\xa1\x00\x07")
    if mac._accept_downlink(RxFrame(accepted), True) is None:
        failures.append("the valid downlink was refused")
    snapshot = mac.state.to_bytes()
    fed = {"replay": 0, "forged": 0, "misaddressed": 0}

    def refuse(kind, data):
        before = dict(mac.status.drops)
        try:
            got = mac._accept_downlink(RxFrame(data), True)
        except BaseException as exc:
            failures.append("%s raised %r" % (kind, exc))
            return
        fed[kind] += 1
        if got is not None:
            failures.append("%s accepted" % kind)
        if mac.state.to_bytes() != snapshot:
            failures.append("%s changed the session" % kind)
        grew = [r for r in mac.status.drops if mac.status.drops[r] != before.get(r, 0)]
        if len(grew) != 1 or mac.status.drops[grew[0]] != before.get(grew[0], 0) + 1:
            failures.append("%s not counted once" % kind)

    for i in range(n):
        refuse("replay", accepted)
        refuse("replay", downlink(keys, 50 - (i % 50), b"\xa1\x00\x08"))
        refuse("forged", downlink(wrong, 51 + i, b"\xa1\x00\x09"))
        tampered = bytearray(downlink(keys, 51 + i, b"\xa1\x00\x09"))
        tampered[-5 - (i % 3)] ^= 1 << (i % 8)  # payload bytes or the MIC
        refuse("forged", bytes(tampered))
        refuse("misaddressed", downlink(keys, 51 + i, b"\xa1\x00\x0a", addr=ADDR ^ (1 + i)))
    fresh = mac._accept_downlink(RxFrame(downlink(keys, 51, b"\xa1\x00\x0b")), True)
    if fresh is None or bytes(fresh.payload) != b"\xa1\x00\x0b":
        failures.append("a fresh valid downlink was refused after the attack")
    print(json.dumps({"fed": fed, "drops": mac.status.drops, "failures": failures[:10],
                      "failure_count": len(failures)}))  # fmt: skip
    sys.exit(1 if failures else 0)


main()
