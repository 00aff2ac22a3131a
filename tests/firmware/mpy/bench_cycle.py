"""Harness for tools/bench/firmware_mac.py: the uplink cycle alone (MicroPython unix port).

``bench_cycle.py cycle STATE_FILE DOWNLINK_HEX`` (via a one-line runner that imports this
module): what a battery node does on each wake from deep sleep — restore the session from the
stores written by ``bench_node.py join`` (RTC tier), one confirmed uplink whose RX1 brings a
downlink with a MAC command, on the board's real clock; prints ``micropython.mem_peak()``. The
frames are precomputed by the CPython bench, so no network code sits in this heap.
"""

import gc
import json
import sys
from binascii import unhexlify

import micropython
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from lorawan.mac import Mac

APP_KEY = bytes(range(1, 17))
PAYLOAD = b"\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b"  # an 11-byte bin_status


class ReplayLink:
    """Answers a Join-Request with ``accept`` and a data uplink with ``down`` (RX1)."""

    def __init__(self, accept, down):
        self.accept = accept
        self.down = down
        self.radio = None

    def attach(self, node_id, radio):
        self.radio = radio

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        if phy[0] == 0:
            self.radio.deliver(self.accept, freq_hz, datr, t_ms + 5000)
        else:
            self.radio.deliver(self.down, freq_hz, datr, t_ms + 1000)


def cycle(path, down_hex):
    from hal.clock import RealClock

    gc.collect()
    code = gc.mem_alloc()  # modules loaded so far: MAC, HAL, this harness
    with open(path) as f:
        saved = json.load(f)
    nvs = DictStore({k: unhexlify(v) for k, v in saved["nvs"].items()})
    rtc = DictStore({k: unhexlify(v) for k, v in saved["rtc"].items()})
    del saved
    clock = RealClock()
    radio = SimRadio(clock, ReplayLink(b"", unhexlify(down_hex)), "b")
    mac = Mac(radio, clock, nvs, rtc, region="EU868", dev_eui=bytes(8), join_eui=bytes(8),
              app_key=APP_KEY)  # fmt: skip
    out = {"boot": mac.boot, "heap_after_imports": code}

    async def run():
        mac.state.dr = 5  # SF7: keeps the real-time wait short
        r = await mac.send(2, PAYLOAD, True)
        out["send"] = r.status
        out["ack"] = r.ack
        out["downlink"] = r.fport

    import asyncio

    asyncio.run(run())
    out["peak"] = micropython.mem_peak()
    gc.collect()
    out["current_after_gc"] = gc.mem_alloc()
    return out


if len(sys.argv) > 1 and sys.argv[1] == "cycle":
    print(json.dumps(cycle(sys.argv[2], sys.argv[3])))
