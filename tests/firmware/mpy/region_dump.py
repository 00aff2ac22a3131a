"""Harness: print the firmware's region tables as JSON (for tests/firmware/test_region_tables.py).

Runs under MicroPython (and CPython): proves the region modules load on the device interpreter
and hands their values to the test, which compares them with ``protocol.lorawan.region``.
"""

import json

from lorawan import region
from lorawan.session import State


def dump(name):
    r = region.get(name)
    s = State()
    r.default_plan(s, 0)
    channels = []
    for ch in range(r.channel_count()):
        if s.mask[ch >> 3] & (1 << (ch & 7)):
            drs = [dr for dr in range(16) if r.channel_allows(s, ch, dr)]
            channels.append([r.channel_freq(s, ch), min(drs), max(drs)])
    rx1 = []
    for dr in range(16):
        if r.valid_uplink_dr(dr) and r.DR_TABLE[dr][0]:
            row = []
            for off in range(r.max_rx1_offset + 1):
                row.append(r.rx1(s, 0, dr, off)[1])
            rx1.append([dr, row])
    return {
        "dr_table": [list(x) for x in r.DR_TABLE],
        "max_m": list(r.MAX_M),
        "channels": channels,
        "max_channels": r.max_channels,
        "rx1": rx1,
        "rx2": [s.rx2_freq, s.rx2_dr],
        "tx_power_dbm": [r.tx_power_dbm(i) for i in range(r.max_tx_power + 1)],
        "bands": [list(b) for b in r.BANDS],
        "join_drs": list(r.join_drs),
        "cflist_type": 0 if r.has_cflist_freqs else 1,
    }


print(json.dumps({"EU868": dump("EU868"), "US915": dump("US915")}))
