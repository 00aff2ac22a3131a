"""Harness: the Join-Request budget of LoRaWAN L2 1.0.4 §7 in virtual time (MicroPython/CPython).

A node that never hears a Join-Accept keeps joining for two days and a half. From the frames on
the simulated air (their data rate gives their time on air) the harness sums the airtime in each
§7 window after the first Join-Request, T0: under 36 s in [T0, T0 + 1 h), under 36 s in
[T0 + 1 h, T0 + 11 h), under 8.7 s in every 24 h after that; and, so the check cannot pass by
sending nothing, each window must be used to within one frame of its budget. Then the budget
across a deep sleep (RTC store kept, the clock runs on) and a power cut (RTC store lost).

Usage: ``join_backoff.py``. Prints one JSON object ``{check: [failures]}``; exits 1 on any.
"""

import json
import sys

from hal.radio import time_on_air_ms
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan.mac import Mac
from testnet import TestNet

APP_KEY = bytes(range(32, 48))
EUI = b"\x00\x00\x00\x00\x00\x00\x00\x07"
HOUR = 3600000
DAY = 24 * HOUR
JOIN_LEN = 23
LONGEST_MS = 1483  # a Join-Request at SF12/125 kHz (time_on_air_ms(12, 125, 23))


def _toa(datr):
    sf = int(datr[2 : datr.index("BW")])
    bw = int(datr[datr.index("BW") + 2 :])
    return time_on_air_ms(sf, bw, JOIN_LEN)


def _joins(net):
    """(time, ms on air) of every Join-Request so far; the frames themselves are let go (heap)."""
    joins = getattr(net, "joins", None)
    if joins is None:
        joins = net.joins = []
    for u in net.uplinks:
        if u[1][0] == 0:
            joins.append((u[4], _toa(u[3])))
    del net.uplinks[:]
    return joins


def _windows(joins, t0, until):
    """[(start, end, budget, airtime)] of the §7 windows that end by ``until``."""
    bounds = [(0, HOUR, 36000), (HOUR, 11 * HOUR, 36000)]
    start = 11 * HOUR
    while start + DAY <= until - t0:
        bounds.append((start, start + DAY, 8700))
        start += DAY
    out = []
    for lo, hi, budget in bounds:
        air = 0
        for t, toa in joins:
            if lo <= t - t0 < hi:
                air += toa
        out.append((lo, hi, budget, air))
    return out


def _node(net, clock, nvs, rtc):
    return Mac(SimRadio(clock, net, "j"), clock, nvs, rtc, dev_eui=EUI, join_eui=bytes(8),
               app_key=APP_KEY)  # fmt: skip


def _join_until(net, clock, mac, until):
    async def run():
        while clock.ticks_ms() < until:
            await mac.join(max_attempts=6)  # DR5 down to DR0 (lorawan.eu868.join_drs)
            _joins(net)

    clock.run(run())


def check_budget_two_days(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    net.answer_joins = False
    mac = _node(net, clock, DictStore(), DictStore())
    end = 11 * HOUR + 2 * DAY
    _join_until(net, clock, mac, end)
    joins = _joins(net)
    if not joins:
        fail.append("no Join-Request at all")
        return
    t0 = joins[0][0]
    for lo, hi, budget, air in _windows(joins, t0, end):
        name = "T0+%dh..%dh" % (lo // HOUR, hi // HOUR)
        if air >= budget:
            fail.append("%s: %d ms on air, the budget is under %d ms" % (name, air, budget))
        # in the first hour the 1 % sub-band off-times (ETSI, RP002-1.0.4 §5.1) bind before the
        # budget does; later the budget binds and is used to within one frame
        least = budget * 3 // 4 if lo == 0 else budget - LONGEST_MS
        if air < least:
            fail.append(
                "%s: only %d ms on air of %d ms: the budget is not used" % (name, air, budget)
            )


def _two_boots(keep_rtc, off_ms):
    """Join until T0 + 11 h 3 min, switch off for ``off_ms``, join again until T0 + 35 h."""
    nvs = {}
    rtc = {}
    net = TestNet(None, APP_KEY)
    net.answer_joins = False
    clock = VirtualClock()
    net.clock = clock
    _join_until(net, clock, _node(net, clock, DictStore(nvs), DictStore(rtc)), 11 * HOUR + 180000)
    off_at = clock.ticks_ms()
    first = len(_joins(net))
    if not keep_rtc:
        rtc.clear()  # a power cut: RTC memory is lost, NVS is kept
    # the next boot: RAM is gone, the (virtual) RTC ran on while the node was off
    clock = VirtualClock(off_at + off_ms)
    net.clock = clock
    mac = _node(net, clock, DictStore(nvs), DictStore(rtc))
    t0 = _joins(net)[0][0]
    _join_until(net, clock, mac, t0 + 35 * HOUR)
    return _joins(net), first, t0


def check_deep_sleep_keeps_budget(fail):
    joins, first, t0 = _two_boots(True, 10 * 60000)
    if len(joins) == first:
        fail.append("no Join-Request after the deep sleep")
    # the deep sleep fell in [T0 + 11 h, T0 + 35 h): the second boot must not start a fresh
    # 36 s hour in it (it did when the back-off lived in RAM from the MAC's creation)
    for lo, hi, budget, air in _windows(joins, t0, t0 + 35 * HOUR):
        if air >= budget:
            fail.append("T0+%dh..%dh across a deep sleep: %d ms on air (budget < %d ms)"
                        % (lo // HOUR, hi // HOUR, air, budget))  # fmt: skip


def check_power_cut_keeps_budget(fail):
    joins, first, t0 = _two_boots(False, 10 * 60000)
    if len(joins) == first:
        fail.append("no Join-Request after the power cut")
    # the 10 minutes off are unknown to the node and count as none, so its windows end a
    # little later than the real ones: each real window still holds less than its budget
    for lo, hi, budget, air in _windows(joins, t0, t0 + 35 * HOUR):
        if air >= budget:
            fail.append("T0+%dh..%dh across a power cut: %d ms on air (budget < %d ms)"
                        % (lo // HOUR, hi // HOUR, air, budget))  # fmt: skip


CHECKS = (
    ("budget_two_days", check_budget_two_days),
    ("deep_sleep_keeps_budget", check_deep_sleep_keeps_budget),
    ("power_cut_keeps_budget", check_power_cut_keeps_budget),
)


def main():
    out = {}
    for name, fn in CHECKS:
        fail = []
        try:
            fn(fail)
        except Exception as exc:
            fail.append("raised %r" % (exc,))
        out[name] = fail
    print(json.dumps(out))
    sys.exit(1 if any(out.values()) else 0)


main()
