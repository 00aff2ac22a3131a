# ruff: noqa: UP031 - MicroPython harness: %-format is what it has
"""Harness (MicroPython unix port, or CPython): the full bin or lamp app on the real MAC loses
power at random points, again and again; no DevNonce and no (DevAddr, FCnt) is ever reused.

Extends tests/firmware/mpy/powerloss.py (the MAC alone, every persistent step) to the apps: the
node is firmware/main.py's ``build_app`` wiring on a sim radio and an in-process network
(tests/firmware/mpy/testnet.py). A cut cancels every task the node started wherever it waits
(virtual time: a cut can fall between an NVS write and the transmission it protects, inside a
receive window, during a join), drops every object in RAM and the RTC memory of the MAC and the
app, keeps NVS, and boots a new MAC and app on the same NVS, as a brown-out would.

On the air (L2 1.0.4 §6.2.5, §4.3.1.5): a DevNonce may appear once; a (DevAddr, FCnt) may appear
again only as the byte-identical retransmission of a confirmed uplink; anything else reuses a
keystream.

Usage: ``app_powerloss.py bin|lamp CUTS SEED [--broken]``. ``--broken`` also wipes the MAC's
NVS at each cut (a MAC that persists nothing), to show the check catches reuse. Prints one JSON
line; exits 1 on a violation (unless --broken).
"""

import asyncio
import gc
import json
import sys

import world
from apps.maclink import MacLink
from hal.rng import Rng
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from lorawan.mac import Mac
from main import build_app
from testnet import TestNet
from world import make_bin, make_lamp, set_fill

HOUR = 3_600_000
DEV_EUI = b"\x00\x00\x00\x00\x00\x00\x00\x09"


def main():
    kind, cuts, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    broken = "--broken" in sys.argv
    rng = Rng(seed)
    net = TestNet(None, world.APP_KEY)
    mac_nvs, mac_rtc = DictStore(), DictStore()

    def link_factory(clock):
        radio = SimRadio(clock, net, "n1")
        mac = Mac(radio, clock, mac_nvs, mac_rtc, region="EU868", dev_eui=DEV_EUI,
                  join_eui=bytes(8), app_key=world.APP_KEY)  # fmt: skip
        return MacLink(mac, clock, max_wait_ms=HOUR)

    import hal.sim_pins

    hal.sim_pins.LOG_KEEP = 8  # days of bus logs are test tooling, not what is tested
    world.LOG_LEVELS = False
    world.CLOCK = world.VirtualClock()
    w = make_bin(link=link_factory) if kind == "bin" else make_lamp(link=link_factory)
    clock = w["clock"]
    # the lamp is mains powered (no RTC store, no deep sleep); make_lamp's app settings
    app_cfg = {"sensor_offset_cm": 30} if kind == "bin" else {"supply_sense": True}
    rtc = w.get("rtc")
    extra = () if kind == "bin" else (55.6761, 12.5683)
    seen_nonce = {}
    seen_fcnt = {}
    violations = []
    counts = {"joins": 0, "data": 0, "retransmissions": 0, "cuts": 0}

    def audit():
        for _node, phy, _freq, _datr, _t in net.uplinks:
            phy = bytes(phy)
            mtype = phy[0] >> 5
            if mtype == 0:
                nonce = phy[17] | (phy[18] << 8)
                counts["joins"] += 1
                if nonce in seen_nonce:
                    violations.append("DevNonce %d sent twice" % nonce)
                seen_nonce[nonce] = True
            elif mtype in (2, 4):
                addr = bytes(phy[1:5])
                fcnt = phy[6] | (phy[7] << 8)
                key = (addr, fcnt)
                counts["data"] += 1
                mic = phy[-4:]  # differs with any byte of the frame
                before = seen_fcnt.get(key)
                if before is None:
                    seen_fcnt[key] = mic
                elif before == mic and mtype == 4:
                    counts["retransmissions"] += 1  # the same confirmed frame again: allowed
                else:
                    violations.append("FCnt %d of %s reused" % (fcnt, addr.hex()))
        net.uplinks.clear()
        net.frames.clear()
        # the audit's own record grows with every frame; without a collect here the unix port's
        # heap ran out resizing it after ~7,000 frames even at 64 MB (test tooling, not the node)
        gc.collect()

    node_tasks = []
    real_create_task = asyncio.create_task

    def node_task(coro):
        # every task the node starts (app children, class C listener) dies with the power
        task = real_create_task(coro)
        node_tasks.append(task)
        return task

    def power_off():
        for task in node_tasks:
            task.cancel()
        node_tasks.clear()

    async def life():
        asyncio.create_task = node_task  # the virtual clock's driver started before this
        w["task"] = asyncio.create_task(w["app"].run())
        pir = w["pins"].pin(5) if kind == "lamp" else None
        for _ in range(cuts):
            left = rng.randrange(2 * HOUR) + 1
            while left > 0:  # the world goes on: fill changes, road users pass
                step = min(left, 10 * 60_000)
                await clock.sleep_ms(step)
                left -= step
                if kind == "bin":
                    set_fill(w, 10 + rng.randrange(80))
                elif rng.randrange(2):
                    pir.pulse()
            audit()
            # the power goes: the app stops wherever it waited; RAM and RTC memory are lost
            power_off()
            await clock.sleep_ms(1)
            counts["cuts"] += 1
            mac_rtc.data.clear()
            if broken:
                mac_nvs.data.clear()
            if rtc is not None:
                rtc.data.clear()
            w["power"].reason = "power_on"
            link = link_factory(clock)
            app = build_app(kind, app_cfg, world.Board, link, clock, w["pins"], w["power"],
                            rtc, w["nvs"], *extra)  # fmt: skip
            w.update(link=link, app=app)
            await clock.sleep_ms(rng.randrange(5000))  # off for a while
            w["task"] = asyncio.create_task(app.run())
        await clock.sleep_ms(2 * HOUR)
        audit()
        power_off()
        await clock.sleep_ms(1)
        asyncio.create_task = real_create_task

    clock.run(life())
    out = {"kind": kind, "counts": counts, "violations": violations[:10],
           "violation_count": len(violations), "hours": clock.ticks_ms() // HOUR}  # fmt: skip
    print(json.dumps(out))
    sys.exit(1 if violations and not broken else 0)


main()
