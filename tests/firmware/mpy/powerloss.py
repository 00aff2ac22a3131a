"""Harness: cut power (or deep-sleep) at every step of a join and of uplinks; no DevNonce and no
(DevAddr, FCnt) may ever go on the air twice (L2 1.0.4 §6.2.5, §4.3.1.5).

A *step* is every persistent write (NVS or RTC) and every transmission; a cut at step k stops
the node just before that step takes effect (a cut "after" step k is the cut before step k+1).
On a power cut RAM and RTC memory are lost and NVS is kept; on a deep-sleep reset RTC is kept.

Usage: ``powerloss.py exhaustive|random [--broken]``. ``--broken`` runs a MAC whose uplink
counter never reaches NVS, to show the check catches real bugs. Prints one JSON line; exits 1
when a property was violated (unless --broken, where violations are the expected outcome).
"""

import json
import sys

from hal.rng import Rng
from hal.sim_radio import SimRadio
from hal.vclock import VirtualClock
from lorawan.mac import Mac
from testnet import TestNet

APP_KEY = bytes(range(16, 32))
UPLINKS = 12  # per boot
NVS_EVERY = 4


class PowerCut(BaseException):
    pass


class Budget:
    def __init__(self, cut_at):
        self.steps = 0
        self.cut_at = cut_at

    def step(self):
        self.steps += 1
        if self.steps == self.cut_at:
            raise PowerCut()


class CutStore:
    def __init__(self, data, budget):
        self.data = data
        self.budget = budget

    def load(self, key):
        return self.data.get(key)

    def save(self, key, blob):
        self.budget.step()
        self.data[key] = bytes(blob)


class CutRadio(SimRadio):
    def __init__(self, clock, link, node_id, budget):
        super().__init__(clock, link, node_id)
        self.budget = budget

    async def transmit(self, freq_hz, sf, bw_khz, power_dbm, payload):
        self.budget.step()
        return await super().transmit(freq_hz, sf, bw_khz, power_dbm, payload)


class BrokenMac(Mac):
    def _persist_before_uplink(self, fcnt):
        self.state.fcnt_up = fcnt + 1
        self._save_rtc()  # the bug: the counter never reaches NVS between joins


def boot(net, nvs, rtc, cut_at, broken):
    """One life of the node until it finishes or the budget cuts it; returns steps taken."""
    budget = Budget(cut_at)
    clock = VirtualClock()
    radio = CutRadio(clock, net, "n", budget)
    cls = BrokenMac if broken else Mac

    async def life():
        mac = cls(radio, clock, CutStore(nvs, budget), CutStore(rtc, budget), region="EU868",
                  dev_eui=b"\x00\x00\x00\x00\x00\x00\x00\x07", join_eui=bytes(8),
                  app_key=APP_KEY, nvs_every=NVS_EVERY)  # fmt: skip
        if not mac.joined:
            r = await mac.join(max_attempts=3)
            if not r.ok:
                return
        for i in range(UPLINKS):
            await mac.send(1, bytes([i]), max_wait_ms=3600000)

    try:
        clock.run(life())  # the constructor runs inside: a cold boot writes RTC too
        return budget.steps, True
    except PowerCut:
        return budget.steps, False


def check(net):
    """Violations of 'never twice' over everything the network heard."""
    bad = []
    seen = set()
    for n in net.dev_nonces:
        if n in seen:
            bad.append("DevNonce %d sent twice" % n)
        seen.add(n)
    seen = set()
    last = {}
    for node_id, phy, _, _, _ in net.uplinks:
        if phy[0] >> 5 not in (2, 4):
            continue
        addr = phy[1] | (phy[2] << 8) | (phy[3] << 16) | (phy[4] << 24)
        key = (addr, phy[6] | (phy[7] << 8))
        if key in seen:
            bad.append("FCnt %d of %08x sent twice" % (key[1], addr))
        seen.add(key)
        if addr in last and key[1] <= last[addr]:
            bad.append("FCnt went back to %d after %d" % (key[1], last[addr]))
        last[addr] = key[1]
    return bad


def scenario(cuts, mode, broken):
    """Boot until one life runs to the end; ``cuts`` lists the step of each successive cut."""
    net = TestNet(None, APP_KEY)
    nvs = {}
    rtc = {}
    finished = False
    for cut in cuts + [0]:
        _, finished = boot(net, nvs, rtc, cut, broken)
        if not finished:
            if mode == "power":
                rtc.clear()  # RTC memory does not survive power loss
    return net, finished


def main():
    kind = sys.argv[1]
    broken = "--broken" in sys.argv
    out = {"runs": 0, "violations": [], "unfinished": 0, "steps": 0, "frames": 0}
    # an uncut life gives the number of steps to cut at
    total = boot(TestNet(None, APP_KEY), {}, {}, 0, broken)[0]
    out["steps"] = total
    plans = []
    if kind == "exhaustive":
        for mode in ("power", "sleep"):
            for k in range(1, total + 1):
                plans.append((mode, [k]))
    else:
        rng = Rng(20261128)
        for _ in range(150):
            mode = "power" if rng.randrange(3) else "sleep"
            plans.append((mode, [1 + rng.randrange(total) for _ in range(1 + rng.randrange(4))]))
    for mode, cuts in plans:
        net, finished = scenario(cuts, mode, broken)
        out["runs"] += 1
        out["frames"] += len(net.uplinks)
        if not finished:
            out["unfinished"] += 1
        for v in check(net):
            out["violations"].append("%s cuts=%s: %s" % (mode, cuts, v))
    out["violation_count"] = len(out["violations"])
    out["violations"] = out["violations"][:20]
    print(json.dumps(out))
    if out["violation_count"] and not broken:
        sys.exit(1)


main()
