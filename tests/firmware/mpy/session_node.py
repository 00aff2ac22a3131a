"""Harness: one node running the real MAC in virtual time against tests/firmware/netpeer.py.

Usage: ``session_node.py PORT`` (the peer's UDP port on 127.0.0.1). Runs under MicroPython and
CPython. Prints one JSON line with what the node saw and exits 1 if anything raised.
"""

import json
import sys
from binascii import hexlify

from hal.battery import FixedBattery
from hal.sim_radio import SimRadio
from hal.sim_udp import UdpLink
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan.mac import Mac

APP_KEY = bytes(range(1, 17))
DEV_EUI = b"\x70\xb3\xd5\x7e\xd0\x00\x00\x01"  # MSB first, as consoles print it
JOIN_EUI = b"\x00\x00\x00\x00\x00\x00\x00\x01"
HOUR = 3600000


def as_dict(r):
    return {
        "status": r.status,
        "fcnt": r.fcnt,
        "ack": r.ack,
        "fport": r.fport,
        "payload": None if r.payload is None else hexlify(r.payload).decode(),
        "confirmed_downlink": r.confirmed_downlink,
        "f_pending": r.f_pending,
        "transmissions": r.transmissions,
        "link_check": None if r.link_check is None else list(r.link_check),
        "device_time": None if r.device_time is None else list(r.device_time),
    }


async def scenario(mac, clock, out):
    j = await mac.join()
    out["join"] = {"status": j.status, "attempts": j.attempts, "dev_addr": j.dev_addr}
    out["after_join"] = {"rx2_dr": mac.state.rx2_dr, "channels": list(mac.state.ch_freq[:8])}
    sends = out["sends"] = []

    async def up(payload, confirmed=False):
        r = await mac.send(10, payload, confirmed, max_wait_ms=HOUR)
        sends.append(as_dict(r))

    await up(b"u1")  # peer: confirmed downlink + LinkADRReq block + DevStatusReq
    await up(b"u2")  # ACK + LinkADRAns x2 + DevStatusAns; peer: RXParamSetupReq on FPort 0
    s = mac.state
    out["after_adr"] = {
        "dr": s.dr,
        "tx_power": s.tx_power,
        "mask": s.mask[0],
        "nb_trans": s.nb_trans,
    }
    await up(b"u3")  # RXParamSetupAns; peer stays silent
    await up(b"u4")  # RXParamSetupAns again; peer answers in RX1 with the new offset
    s = mac.state
    out["after_rx_param"] = {
        "rx1_dr_offset": s.rx1_dr_offset,
        "rx2_dr": s.rx2_dr,
        "rx2_freq": s.rx2_freq,
    }
    mac.request_link_check()
    mac.request_device_time()
    await up(b"u5")  # no RXParamSetupAns any more; LinkCheckReq + DeviceTimeReq
    mac.set_class("C")
    await up(b"u6", True)  # confirmed uplink, acknowledged
    t0 = clock.ticks_ms()
    got = await mac.receive(60000)  # class C downlink between uplinks
    out["class_c"] = None if got is None else [got[0], hexlify(got[1]).decode()]
    out["class_c_wait_ms"] = clock.ticks_ms() - t0
    await up(b"u7")
    out["status"] = mac.status.as_dict()
    out["class"] = mac.device_class


def main():
    port = int(sys.argv[1])
    clock = VirtualClock()
    link = UdpLink("127.0.0.1", port, timeout_s=5.0, poll_ms=1000)
    radio = SimRadio(clock, link, "node-1")
    mac = Mac(radio, clock, DictStore(), DictStore(), region="EU868", dev_eui=DEV_EUI,
              join_eui=JOIN_EUI, app_key=APP_KEY, battery=FixedBattery(200))  # fmt: skip
    out = {}
    clock.run(scenario(mac, clock, out))
    link.close()
    out["virtual_ms"] = clock.ticks_ms()
    print(json.dumps(out))


main()
