# ruff: noqa: UP031, SIM115 - MicroPython harness: %-format and plain open() are what it has
"""Harness (MicroPython unix port, or CPython): the firmware's downlink path fed hostile bytes.

1. ``cp.decode`` (the generated payload decoder) on random bytes and on mutations of every golden
   payload vector: it returns ``(name, fields)`` or raises ``cp.PayloadError``, nothing else.
2. The MAC's ``_accept_downlink`` on random bytes and mutations of a valid downlink: never raises,
   every refusal is counted (``status.dropped()`` grows by one per refused frame).
3. Correctly signed downlinks carrying random payloads on every downlink fPort, through the MAC
   and then the payload decoder, as an app would: only ``PayloadError`` comes out.

Heap: ``gc.mem_alloc()`` after ``gc.collect()`` is compared before and after the loops, so a
decoder that keeps what it was fed shows up.

Usage: ``firmware_fuzz.py VECTORS_JSON COUNT SEED``. Prints one JSON line; exits 1 on a failure.
"""

import gc
import json
import sys

import citypack_payloads as cp
from hal.radio import RxFrame
from hal.rng import Rng
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


def downlink(keys, fcnt, fport, payload):
    buf = bytearray(frame.BUF_SIZE)
    n = frame.build_data(buf, frame.UNCONFIRMED_DOWN, ADDR, 0, fcnt, b"", 0, fport, payload,
                         len(payload), keys)  # fmt: skip
    return bytes(buf[frame.B0 : frame.B0 + n])


def random_bytes(rng, most):
    return bytes(rng.randrange(256) for _ in range(rng.randrange(most + 1)))


def mutate(rng, seed):
    b = bytearray(seed)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(5)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2 and b:
            b = b[: rng.randrange(len(b))]
        elif op == 3:
            i = rng.randrange(len(b) + 1)
            b = b[:i] + bytearray(random_bytes(rng, 6)) + b[i:]
        elif b:
            i = rng.randrange(len(b))
            b = b[:i] + b[i : i + 1 + rng.randrange(8)] + b[i:]
    return bytes(b)


def heap():
    gc.collect()
    return gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0  # CPython: not measured here


def main():
    vectors = json.load(open(sys.argv[1]))
    count = int(sys.argv[2])
    rng = Rng(int(sys.argv[3]))
    seeds = [(c["fport"], bytes.fromhex(c["hex"])) for c in vectors["cases"]]
    fports = sorted(set(f for f, _ in seeds))
    down_ports = [cp.FPORT[n] for n in cp.FPORT if cp.DIRECTION[n] == "down"]
    failures = []
    decoded = refused = 0

    def decode(fport, data):
        try:
            cp.decode(fport, data)
            return 1
        except cp.PayloadError:
            return 0
        except Exception as exc:  # anything else is a bug
            failures.append("cp.decode(%d, %s) raised %r" % (fport, data.hex(), exc))
            return 0

    heap_before = heap()
    for i in range(count):
        if i % 3 == 0:
            fport, data = fports[rng.randrange(len(fports))], random_bytes(rng, 40)
        else:
            fport, seed = seeds[rng.randrange(len(seeds))]
            data = mutate(rng, seed)
            if i % 7 == 0:
                fport = rng.randrange(256)
        if decode(fport, data):
            decoded += 1
        else:
            refused += 1

    clock = VirtualClock()
    mac = Mac(SimRadio(clock, NoNet(), "f"), clock, DictStore(), DictStore(), region="EU868")
    mac.activate_abp(ADDR, NWK, APP)
    keys = Keys(NWK, APP)
    valid = downlink(keys, 3, 120, b"\xa1\x00\x01")
    if mac._accept_downlink(RxFrame(valid), True) is None:
        failures.append("the valid downlink was refused")
    mac_fed = 0
    for i in range(count):
        data = random_bytes(rng, 64) if i & 1 else mutate(rng, valid)
        if data == valid:
            continue
        before = mac.status.dropped()
        try:
            got = mac._accept_downlink(RxFrame(data), i % 4 == 0)
        except BaseException as exc:
            failures.append("MAC raised %r" % (exc,))
            continue
        mac_fed += 1
        if got is None and mac.status.dropped() != before + 1:
            failures.append("a refused frame was not counted")
        elif got is not None:
            decode(got.fport, bytes(got.payload))  # a lucky frame that verifies: app path

    signed = app_decoded = 0
    fcnt = 10
    for i in range(count // 2):
        fcnt += 1
        fport = down_ports[i % len(down_ports)]
        if i & 1:
            payload = random_bytes(rng, 50)
        else:
            payload = mutate(rng, seeds[rng.randrange(len(seeds))][1])[:51]
        try:
            got = mac._accept_downlink(RxFrame(downlink(keys, fcnt, fport, payload)), True)
        except BaseException as exc:
            failures.append("MAC raised %r on a signed frame" % (exc,))
            continue
        if got is None:
            failures.append("a correctly signed downlink was refused")
            continue
        signed += 1
        if bytes(got.payload) != payload:
            failures.append("decrypted payload differs")
        app_decoded += decode(got.fport, bytes(got.payload))
    vectors = seeds = None
    heap_after = heap()
    out = {
        "decoded": decoded,
        "refused": refused,
        "mac_fed": mac_fed,
        "drops": mac.status.drops,
        "signed": signed,
        "app_decoded": app_decoded,
        "heap_growth": heap_after - heap_before,
        "failures": failures[:10],
        "failure_count": len(failures),
    }
    print(json.dumps(out))
    sys.exit(1 if failures else 0)


main()
