"""Harness for tools/bench/firmware_mac.py (MicroPython unix port).

``bench_node.py join STATE_FILE JOIN_ACCEPT_HEX``: OTAA join (virtual time) against a
precomputed Join-Accept, then write the node's NVS and RTC stores to STATE_FILE.

``cycle`` is in bench_cycle.py, on its own so that nothing else of the harness sits in the
heap it measures.

``bench_node.py alloc N``: bytes left on the heap (``gc.mem_alloc()``, GC disabled) per
steady-state uplink build (FHDR, encrypt, MIC) over N uplinks, and µs per build.
"""

import gc
import json
import sys
import time
from binascii import hexlify, unhexlify

import micropython
from bench_cycle import APP_KEY, PAYLOAD, ReplayLink
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from lorawan.mac import Mac


def join(path, accept_hex):
    from hal.vclock import VirtualClock

    clock = VirtualClock()
    nvs = DictStore()
    rtc = DictStore()
    radio = SimRadio(clock, ReplayLink(unhexlify(accept_hex), b""), "b")
    mac = Mac(radio, clock, nvs, rtc, region="EU868", dev_eui=bytes(8), join_eui=bytes(8),
              app_key=APP_KEY)  # fmt: skip

    async def run():
        return await mac.join(max_attempts=1)

    result = clock.run(run())
    with open(path, "w") as f:
        json.dump({t: {k: hexlify(v).decode() for k, v in s.data.items()}
                   for t, s in (("nvs", nvs), ("rtc", rtc))}, f)  # fmt: skip
    return {"join": result.status}


def alloc(n):
    from hal.vclock import VirtualClock

    clock = VirtualClock()
    mac = Mac(SimRadio(clock, ReplayLink(b"", b""), "b"), clock, DictStore(), DictStore())
    mac.activate_abp(0x26011234, bytes(range(16)), bytes(range(16, 32)))
    s = mac.state
    for _ in range(10):  # warm-up
        mac.build_uplink(2, PAYLOAD, 11, False, 0)
        s.fcnt_up += 1
    gc.collect()
    gc.disable()  # nothing is reclaimed during the loop: growth = what the builds left behind
    before = gc.mem_alloc()
    total_before = micropython.mem_total()
    t0 = time.ticks_us()
    for _ in range(n):
        mac.build_uplink(2, PAYLOAD, 11, False, 0)
        s.fcnt_up += 1
    us = time.ticks_diff(time.ticks_us(), t0)
    total_after = micropython.mem_total()
    after = gc.mem_alloc()
    gc.enable()
    return {
        "bytes_per_uplink": (after - before) / n,
        # includes call frames the VM puts on the heap and frees on return (m_del)
        "transient_bytes_per_uplink": (total_after - total_before) / n,
        "us_per_uplink": us / n,
        "uplinks": n,
    }


def main():
    mode = sys.argv[1]
    if mode == "join":
        print(json.dumps(join(sys.argv[2], sys.argv[3])))
    else:
        print(json.dumps(alloc(int(sys.argv[2]))))


main()
