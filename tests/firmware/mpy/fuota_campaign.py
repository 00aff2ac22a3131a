"""Harness: one lamp node through a whole FUOTA campaign in virtual time (MicroPython/CPython).

Usage: ``fuota_campaign.py PLAN.json``. The plan (written by tests/firmware/test_fuota.py with the
CPython protocol.fuota codec) holds the node's ABP keys and AppKey, the signing public key, the
unicast setup payloads, the group's session keys (derived by CPython, independently of the node),
the DataFragment payloads and which of them the air loses. The network here is a small scripted
server on the firmware's own frame code: it answers AppTimeReq, sends the setup by class C
unicast, the fragments as multicast frames in the group's session, then a status request.

Prints one JSON line: every uplink (fport, payload hex), the agent's report, the update result,
the MAC's drop counters, and the live heap (after gc.collect, sampled at every frame sent; the
baseline is taken once the code is loaded and the plan read, before the MAC and agent exist).
"""

import asyncio
import gc
import json
import struct
import sys
from binascii import hexlify, unhexlify

from fuota.agent import Agent
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan import frame
from lorawan.mac import Mac
from lorawan.session import Keys

RX2_FREQ = 869525000
_mem_alloc = getattr(gc, "mem_alloc", lambda: 0)  # MicroPython only
RX2_DATR = "SF12BW125"
DR_DATR = ("SF12BW125", "SF11BW125", "SF10BW125", "SF9BW125", "SF8BW125", "SF7BW125")


class Air:
    def __init__(self, clock, keys, dev_addr, net_epoch):
        self.clock = clock
        self.keys = keys
        self.addr = dev_addr
        self.net_epoch = net_epoch
        self.radio = None
        self.fcnt_down = 0
        self.ups = []
        self.work = bytearray(frame.BUF_SIZE)
        self.buf = bytearray(frame.BUF_SIZE)
        self.time_answers = 0

    def attach(self, node_id, radio):
        self.radio = radio

    def net_gps(self):
        return self.net_epoch + self.clock.ticks_ms() // 1000

    def down(self, fport, payload, keys=None, addr=None, fcnt=None):
        if keys is None:
            keys, addr, fcnt = self.keys, self.addr, self.fcnt_down
            self.fcnt_down += 1
        n = frame.build_data(
            self.buf, frame.UNCONFIRMED_DOWN, addr, 0, fcnt, b"", 0, fport, payload,
            len(payload), keys,
        )  # fmt: skip
        return bytes(self.buf[frame.B0 : frame.B0 + n])

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        try:
            d = frame.parse_data(phy, len(phy), self.addr, -1, self.keys, self.work, False)
        except frame.FrameError:
            return
        self.ups.append((d.fport, hexlify(d.payload).decode()))
        p = d.payload
        if d.fport == 202 and len(p) >= 6 and p[0] == 0x01:  # AppTimeReq -> AppTimeAns
            dev_t = struct.unpack_from("<I", p, 1)[0]
            corr = self.net_gps() - dev_t
            self.time_answers += 1
            ans = bytes([0x01]) + struct.pack("<i", corr) + bytes([p[5] & 0x0F])
            self.radio.deliver(self.down(202, ans), freq_hz, datr, t_ms + 1000)


async def settle(clock, mac, agent):
    # the scripted server sends only while the node is idle in class C (no TX, no RX window)
    for _ in range(600):
        if not agent.outbox and not mac._busy:
            return
        await clock.sleep_ms(500)


async def campaign(plan, clock, mac, agent, air, out):
    heap = out["heap"]

    def sample():
        gc.collect()
        a = _mem_alloc()
        if a > heap["peak"]:
            heap["peak"] = a

    await clock.sleep_ms(30000)  # the node's first AppTimeReq goes up and is answered
    await settle(clock, mac, agent)
    for item in plan["setup"]:
        await settle(clock, mac, agent)
        air.radio.deliver(
            air.down(item["fport"], unhexlify(item["hex"])), RX2_FREQ, RX2_DATR, clock.ticks_ms()
        )
        await clock.sleep_ms(8000)
        sample()
    await settle(clock, mac, agent)
    mc = plan["mc"]
    start = plan["session_start_s"] * 1000
    wait = start + 2000 - clock.ticks_ms()
    if wait > 0:
        await clock.sleep_ms(wait)
    mkeys = Keys(unhexlify(mc["nwk"]), unhexlify(mc["app"]))
    drop = set(plan["drop"])
    datr = DR_DATR[mc["dr"]]
    fcnt = mc["fcnt0"]
    for i, h in enumerate(plan["fragments"]):
        phy = air.down(201, unhexlify(h), mkeys, mc["addr"], fcnt)
        fcnt += 1
        if i not in drop:
            air.radio.deliver(phy, mc["freq"], datr, clock.ticks_ms())
        out["sent"] += 1
        await clock.sleep_ms(plan["fragment_gap_ms"])
        sample()
    for h in plan.get("extra_mc", ()):  # hostile frames on the group (replays, forgeries)
        air.radio.deliver(unhexlify(h), mc["freq"], datr, clock.ticks_ms())
        await clock.sleep_ms(plan["fragment_gap_ms"])
    # the session may end now: wait for it, then ask for the status by unicast
    end = start + (1 << plan["session_timeout"]) * 1000 + 1000 - clock.ticks_ms()
    if end > 0:
        await clock.sleep_ms(end)
    for item in plan["after"]:
        await settle(clock, mac, agent)
        air.radio.deliver(
            air.down(item["fport"], unhexlify(item["hex"])), RX2_FREQ, RX2_DATR, clock.ticks_ms()
        )
        await clock.sleep_ms(8000)
    await settle(clock, mac, agent)
    for _ in range(120):
        if agent.update_result is not None or not plan["expect_update"]:
            break
        await clock.sleep_ms(1000)
    sample()


def main():
    plan = json.load(open(sys.argv[1]))
    gc.collect()
    # the baseline: code loaded and the test plan read; the MAC, the agent and all they hold
    # from here on count in the peak
    base = _mem_alloc()
    clock = VirtualClock()
    keys = Keys(unhexlify(plan["nwk_s_key"]), unhexlify(plan["app_s_key"]))
    air = Air(clock, keys, plan["dev_addr"], plan["net_epoch"])
    nvs = DictStore()
    mac = Mac(SimRadio(clock, air, "lamp"), clock, nvs, DictStore(), region="EU868")
    mac.activate_abp(plan["dev_addr"], unhexlify(plan["nwk_s_key"]), unhexlify(plan["app_s_key"]))
    reboots = []
    agent = Agent(
        mac, clock, nvs, unhexlify(plan["app_key"]), unhexlify(plan["public_key"]),
        root=plan["root"], running_version=plan["running_version"],
        max_missing=plan.get("max_missing", 300), max_file=plan.get("max_file", 65536),
        max_wait_ms=600000, reboot=lambda: reboots.append(clock.ticks_ms()),
    )  # fmt: skip
    mac.on_downlink = lambda fport, payload: agent.handle(fport, payload)
    mac.state.dr = 5  # SF7: the answers' duty-cycle off-times stay seconds, not minutes
    out = {"sent": 0, "heap": {"base": base, "peak": 0}, "raised": None}

    async def body():
        mac.set_class("C")  # inside the loop: its listening task belongs to this run
        task = asyncio.create_task(agent.run())
        try:
            await campaign(plan, clock, mac, agent, air, out)
        finally:
            task.cancel()

    try:
        clock.run(body())
    except Exception as exc:  # reported, and the exit code says so
        out["raised"] = "%s: %s" % (type(exc).__name__, exc)
    out["ups"] = air.ups
    out["report"] = agent.report()
    out["reboots"] = len(reboots)
    out["drops"] = dict(mac.status.drops)
    out["time_answers"] = air.time_answers
    print(json.dumps(out))
    sys.exit(1 if out["raised"] else 0)


main()
