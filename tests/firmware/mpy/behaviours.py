"""Harness: MAC behaviours in virtual time against the in-process TestNet (MicroPython/CPython).

Checks (each reports its own failures): ADR back-off (L2 1.0.4 §4.3.1.1), confirmed uplink
retransmission with the same FCnt (§4.3.1.2, NbTrans), US915 sub-band join and LinkADRReq
ChMaskCntl (RP002 §5.2.5), the EU868 duty cycle refusing a send with ``retry_after_ms``,
JoinNonce replay rejection and DevNonce increments (§6.2.5-§6.2.6), FCnt after a cold boot
(+N) or a deep sleep (exact) for ABP, and class C chosen before an OTAA join or ABP activation.

Usage: ``behaviours.py``. Prints one JSON object ``{check: [failures]}``; exits 1 on any.
"""

import asyncio
import json
import sys

from hal.sim_radio import SimRadio
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan import frame
from lorawan.mac import Mac
from lorawan.session import Keys
from testnet import TestNet

APP_KEY = bytes(range(32, 48))
NWK = bytes(range(0x50, 0x60))
APP = bytes(range(0x60, 0x70))
ADDR = 0x26015555
HOUR = 3600000
EUI = b"\x00\x00\x00\x00\x00\x00\x00\x09"


def node(net, clock, nvs=None, rtc=None, region="EU868", **kw):
    radio = SimRadio(clock, net, "n")
    return Mac(radio, clock, DictStore() if nvs is None else nvs,
               DictStore() if rtc is None else rtc, region=region, dev_eui=EUI,
               join_eui=bytes(8), app_key=APP_KEY, **kw)  # fmt: skip


def abp(net, mac):
    mac.activate_abp(ADDR, NWK, APP)
    net.sessions[ADDR] = [Keys(NWK, APP), 0]


def data_uplinks(net):
    return [u for u in net.uplinks if u[1][0] >> 5 in (2, 4)]


def fcnt_of(phy):
    return phy[6] | (phy[7] << 8)


def check_adr_backoff(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    net.answer_data = False
    mac = node(net, clock)
    abp(net, mac)
    mac.state.dr = 5
    mac.state.tx_power = 3
    power_after = []

    async def run():
        for i in range(160):
            r = await mac.send(1, b"x", max_wait_ms=HOUR)
            if r.status != "ok":
                fail.append("send %d: %s" % (i, r.status))
                return
            power_after.append(mac.state.tx_power)

    clock.run(run())
    ups = data_uplinks(net)
    req = [bool(u[1][5] & 0x40) for u in ups]
    if req[:64] != [False] * 64 or req[64:] != [True] * (len(req) - 64):
        fail.append("ADRACKReq must be set from the 65th silent uplink on")
    if power_after[94] != 3 or power_after[95] != 0:
        fail.append("TX power must go to max after ADR_ACK_LIMIT + ADR_ACK_DELAY uplinks")
    datr = [u[3] for u in ups]
    if datr[127] != "SF7BW125" or datr[128] != "SF8BW125" or datr[159] != "SF8BW125":
        fail.append("DR must drop by one after another ADR_ACK_DELAY: %s" % datr[126:130])
    if mac.state.dr != 3:
        fail.append("DR after 160 silent uplinks is %d, expected 3" % mac.state.dr)


def check_confirmed_retransmission(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    mac = node(net, clock)
    abp(net, mac)
    mac.state.dr = 5
    mac.state.nb_trans = 3
    results = []

    async def run():
        net.ack_skip = 1
        results.append(await mac.send(1, b"c1", True, HOUR))
        net.ack_skip = 5
        results.append(await mac.send(1, b"c2", True, HOUR))
        net.ack_skip = 0
        results.append(await mac.send(1, b"c3", True, HOUR))

    clock.run(run())
    r1, r2, r3 = results
    if (r1.status, r1.ack, r1.transmissions) != ("ok", True, 2):
        fail.append("first: %s ack=%s tx=%d" % (r1.status, r1.ack, r1.transmissions))
    if (r2.status, r2.ack, r2.transmissions) != ("no_ack", False, 3):
        fail.append("second: %s ack=%s tx=%d" % (r2.status, r2.ack, r2.transmissions))
    if (r3.status, r3.fcnt) != ("ok", 2):
        fail.append("third: %s fcnt=%d" % (r3.status, r3.fcnt))
    ups = data_uplinks(net)
    if [fcnt_of(u[1]) for u in ups] != [0, 0, 1, 1, 1, 2]:
        fail.append("FCnts on air: %s" % [fcnt_of(u[1]) for u in ups])
    if ups[0][1] != ups[1][1] or not (ups[2][1] == ups[3][1] == ups[4][1]):
        fail.append("a retransmission must repeat the frame byte for byte")
    if mac.status.no_ack != 1 or mac.status.tx_retransmissions != 3:
        fail.append("counters: %s" % mac.status.as_dict())


def _us_channel(freq, datr):
    if datr.endswith("BW125"):
        return (freq - 902300000) // 200000
    return 64 + (freq - 903000000) // 1600000


def _us_rx1(freq, datr):
    ch = _us_channel(freq, datr)
    down = {"SF10BW125": "SF10BW500", "SF9BW125": "SF9BW500", "SF8BW125": "SF8BW500",
            "SF7BW125": "SF7BW500", "SF8BW500": "SF7BW500"}[datr]  # fmt: skip
    return 923300000 + 600000 * (ch % 8), down


def check_us915(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    net.rx1 = _us_rx1
    mac = node(net, clock, region="US915", sub_band=2)
    results = []

    async def run():
        j = await mac.join(max_attempts=4)
        results.append(j.status)
        # LinkADRReq block: all 125 kHz off (ChMaskCntl 7, no 500 kHz), then channels 8..11
        # (ChMaskCntl 0, ChMask 0x0F00); DR3, TXPower 2, NbTrans 1
        block = bytes([0x03, 0x32, 0x00, 0x00, 0x71, 0x03, 0x32, 0x00, 0x0F, 0x01])
        net.queue.append((-1, b"", False, block))
        for _ in range(6):
            r = await mac.send(1, b"us", max_wait_ms=HOUR)
            results.append(r.status)

    clock.run(run())
    if results[0] != "joined":
        fail.append("US915 join: %s" % results[0])
        return
    joins = [u for u in net.uplinks if u[1][0] == 0]
    for u in joins:
        ch = _us_channel(u[2], u[3])
        if not (8 <= ch <= 15 or ch == 65):
            fail.append("join on channel %d, outside sub-band 2" % ch)
    ups = data_uplinks(net)
    if results[1:] != ["ok"] * 6:
        fail.append("sends: %s" % results[1:])
    first = ups[0]
    if not (8 <= _us_channel(first[2], first[3]) <= 15):
        fail.append("first uplink outside sub-band 2")
    for u in ups[2:]:
        ch = _us_channel(u[2], u[3])
        if not (8 <= ch <= 11) or u[3] != "SF7BW125":
            fail.append("after LinkADRReq: channel %d %s" % (ch, u[3]))
    answers = ups[1][1][8 : 8 + (ups[1][1][5] & 0x0F)]
    if bytes(answers) != b"\x03\x07\x03\x07":
        fail.append("LinkADRAns x2 with status 7 expected, FOpts %s" % bytes(answers))


def check_duty_cycle(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    net.answer_data = False
    mac = node(net, clock)
    abp(net, mac)  # DR0: SF12, ~1.3 s on air, 1 % sub-band -> ~130 s off
    out = []

    async def run():
        out.append(await mac.send(1, b"0123456789"))
        out.append(await mac.send(1, b"0123456789"))
        await clock.sleep_ms(out[1].retry_after_ms)
        out.append(await mac.send(1, b"0123456789"))

    clock.run(run())
    a, b, c = out
    if a.status != "ok" or b.status != "duty_cycle" or c.status != "ok":
        fail.append("statuses %s %s %s" % (a.status, b.status, c.status))
    # 23-byte PHY at SF12 is 1483 ms on air: 99 x that off, less the RX windows already waited
    if not 140000 < b.retry_after_ms < 146817:
        fail.append("retry_after_ms %d" % b.retry_after_ms)
    if len(data_uplinks(net)) != 2 or mac.status.duty_cycle != 1:
        fail.append("the refused send must not transmit")


class _Ticking:
    """A clock that moves on by 1 ms at every read, as a real one does between two reads."""

    def __init__(self, clock):
        self._clock = clock
        self._reads = 0

    def ticks_ms(self):
        self._reads += 1
        return self._clock.ticks_add(self._clock.ticks_ms(), self._reads)

    def ticks_add(self, t, delta):
        return self._clock.ticks_add(t, delta)

    def ticks_diff(self, a, b):
        return self._clock.ticks_diff(a, b)


def check_channel_free_while_the_clock_ticks(fail):
    """A channel with no off-time is free even when the clock moves on during the pick. It read
    the clock once for "now" and again per channel, so a millisecond passing in between made
    every channel look busy for 1 ms and the send fail with duty_cycle
    (tests/firmware/test_bench_paths.py saw it on a loaded machine)."""
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    mac = node(net, clock)
    abp(net, mac)
    mac.clock = _Ticking(clock)
    ch, wait = mac._pick_channel(mac.state.dr)
    if ch < 0 or wait != 0:
        fail.append("no free channel on a fresh node: channel %d, wait %d ms" % (ch, wait))


def check_class_c_through_duty_cycle(fail):
    """A lamp waiting out its duty cycle still hears class C, and acks on the waiting uplink."""
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    net.answer_data = False
    radio = SimRadio(clock, net, "c")
    mac = Mac(radio, clock, DictStore(), DictStore(), dev_eui=EUI, join_eui=bytes(8),
              app_key=APP_KEY)  # fmt: skip
    abp(net, mac)
    heard = []
    mac.on_downlink = lambda fport, payload: heard.append((fport, bytes(payload)))
    out = []

    async def run():
        mac.set_class("C")
        out.append(await mac.send(1, b"0123456789"))  # SF12: ~140 s off-time follows
        waiting = asyncio.create_task(mac.send(1, b"0123456789", False, 200000))
        await clock.sleep_ms(10000)  # the second send is waiting for a free channel
        buf = bytearray(frame.BUF_SIZE)
        n = frame.build_data(buf, frame.CONFIRMED_DOWN, ADDR, 0, 0, b"", 0, 7, b"lamp", 4,
                             Keys(NWK, APP))  # fmt: skip
        radio.deliver(bytes(buf[frame.B0 : frame.B0 + n]), 869525000, "SF12BW125",
                      clock.ticks_ms())  # fmt: skip
        await clock.sleep_ms(3000)
        out.append(len(heard))
        out.append(await waiting)

    clock.run(run())
    first, heard_while_waiting, second = out
    if first.status != "ok" or second.status != "ok":
        fail.append("statuses %s %s" % (first.status, second.status))
    if heard_while_waiting != 1 or heard != [(7, b"lamp")]:
        fail.append("class C during the duty-cycle wait heard %r" % (heard,))
    ups = data_uplinks(net)
    if len(ups) != 2 or not ups[1][1][5] & 0x20:  # FCtrl ACK (L2 §4.3.1.2)
        fail.append("the uplink after the wait must acknowledge the confirmed downlink")


def check_class_c_before_activation(fail):
    """Class C chosen before there is a session (the lamp app does so at start-up) holds through
    an OTAA join and an ABP activation, and the node listens as soon as the session exists."""
    for how in ("otaa", "abp"):
        clock = VirtualClock()
        net = TestNet(clock, APP_KEY)
        net.answer_data = False
        radio = SimRadio(clock, net, "c")
        mac = Mac(radio, clock, DictStore(), DictStore(), dev_eui=EUI, join_eui=bytes(8),
                  app_key=APP_KEY)  # fmt: skip
        heard = []
        mac.on_downlink = lambda fport, payload, heard=heard: heard.append((fport, bytes(payload)))

        async def run(mac=mac, radio=radio, net=net, clock=clock, how=how):
            mac.set_class("C")
            if how == "otaa":
                if (await mac.join(max_attempts=1)).status != "joined":
                    return
            else:
                abp(net, mac)
            await clock.sleep_ms(5000)  # no uplink: only class C can hear what comes now
            s = mac.state
            sf, bw = mac.region.DR_TABLE[s.rx2_dr]
            buf = bytearray(frame.BUF_SIZE)
            n = frame.build_data(buf, frame.UNCONFIRMED_DOWN, s.dev_addr, 0, 0, b"", 0, 7,
                                 b"lamp", 4, net.sessions[s.dev_addr][0])  # fmt: skip
            radio.deliver(bytes(buf[frame.B0 : frame.B0 + n]), s.rx2_freq,
                          "SF%dBW%d" % (sf, bw), clock.ticks_ms())  # fmt: skip
            await clock.sleep_ms(3000)

        clock.run(run())
        if mac.device_class != "C" or heard != [(7, b"lamp")]:
            fail.append("%s: class %s, heard %r" % (how, mac.device_class, heard))
        mac.set_class("A")  # stops the listener


def check_join_nonces(fail):
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    mac = node(net, clock)
    out = []

    async def run():
        out.append(await mac.join(max_attempts=1))
        net.replay_accept = net.last_accept  # an attacker replays the old Join-Accept
        out.append(await mac.join(max_attempts=2))
        net.replay_accept = None
        out.append(await mac.join(max_attempts=1))

    clock.run(run())
    if [r.status for r in out] != ["joined", "no_join_accept", "joined"]:
        fail.append("join results %s" % [r.status for r in out])
    if net.dev_nonces != [0, 1, 2, 3]:
        fail.append("DevNonces %s" % net.dev_nonces)
    if mac.status.drops.get("join_nonce") != 2:
        fail.append("drops %s" % mac.status.drops)


def check_abp_reboots(fail):
    nvs = {}
    rtc = {}
    net = TestNet(None, APP_KEY)
    boots = []

    def life(keep_rtc, sends):
        clock = VirtualClock()
        if not keep_rtc:
            rtc.clear()
        mac = node(net, clock, DictStore(nvs), DictStore(rtc))
        abp(net, mac)
        boots.append(mac.boot)

        async def run():
            for _ in range(sends):
                await mac.send(1, b"a", max_wait_ms=HOUR)

        clock.run(run())

    life(False, 5)  # fresh: FCnt 0..4
    life(True, 2)  # deep sleep: RTC kept, FCnt 5, 6
    life(False, 1)  # power loss: NVS only, FCnt 0 + 16
    fcnts = [fcnt_of(u[1]) for u in data_uplinks(net)]
    if boots != ["fresh", "warm", "cold"]:
        fail.append("boots %s" % boots)
    if fcnts != [0, 1, 2, 3, 4, 5, 6, 16]:
        fail.append("FCnts %s" % fcnts)


def fopts_of(phy):
    return bytes(phy[8 : 8 + (phy[5] & 0x0F)])


def check_fopts_whole_answers(fail):
    """A DevStatusAns is never cut (L2 1.0.4 §4.3.1.6, §5.5) and waits when it does not fit."""
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    mac = node(net, clock)
    abp(net, mac)  # EU868 DR0: M = 59, so N = 51 and FOpts get 51 - payload bytes
    out = []

    async def run():
        # RXParamSetupReq (sticky answer, 2 B) and DevStatusReq (answer, 3 B) in one downlink
        net.queue.append((-1, b"", False, b"\x05\x00\xd2\xad\x84\x06"))
        out.append(await mac.send(1, b"a", max_wait_ms=HOUR))
        for size in (49, 48, 46, 10):
            out.append(await mac.send(1, bytes(size), max_wait_ms=HOUR))

    clock.run(run())
    if [r.status for r in out] != ["ok"] * 5:
        fail.append("statuses %s" % [r.status for r in out])
        return
    fopts = [fopts_of(u[1]) for u in data_uplinks(net)]
    if fopts[0] != b"":
        fail.append("first uplink FOpts %s" % fopts[0])
    # 49 B leave 2: the sticky RXParamSetupAns fits, the DevStatusAns (3 B) waits
    if fopts[1] != b"\x05\x07":
        fail.append("49-byte uplink FOpts %s, expected 0507" % fopts[1])
    # 48 B leave 3: still only the sticky answer fits whole before the 3-byte answer
    if fopts[2] != b"\x05\x07":
        fail.append("48-byte uplink FOpts %s, expected 0507" % fopts[2])
    # 46 B leave 5: sticky answer, then the whole DevStatusAns (battery 255: unknown, L2 §5.5)
    if len(fopts[3]) != 5 or fopts[3][:3] != b"\x05\x07\x06" or fopts[3][3] != 255:
        fail.append("46-byte uplink FOpts %s, expected 0507 06ff<margin>" % fopts[3])
    if fopts[4] != b"\x05\x07":
        fail.append("the DevStatusAns must go once, sticky again: %s" % fopts[4])


def check_fopts_dev_status_48(fail):
    """The issue's case: DevStatusReq, then a 48-byte uplink at EU868 DR0 carries 06 ff <margin>."""
    clock = VirtualClock()
    net = TestNet(clock, APP_KEY)
    mac = node(net, clock)
    abp(net, mac)
    out = []

    async def run():
        net.queue.append((-1, b"", False, b"\x06"))
        out.append(await mac.send(1, b"a", max_wait_ms=HOUR))
        mac.request_link_check()
        out.append(await mac.send(1, bytes(49), max_wait_ms=HOUR))  # room 2: only LinkCheckReq
        out.append(await mac.send(1, bytes(48), max_wait_ms=HOUR))  # room 3: the whole answer
        out.append(await mac.send(1, bytes(48), max_wait_ms=HOUR))  # nothing owed any more

    clock.run(run())
    if [r.status for r in out] != ["ok"] * 4:
        fail.append("statuses %s" % [r.status for r in out])
        return
    fopts = [fopts_of(u[1]) for u in data_uplinks(net)]
    if fopts[1] != b"\x02":
        fail.append("49-byte uplink FOpts %s, expected the LinkCheckReq alone" % fopts[1])
    if len(fopts[2]) != 3 or fopts[2][:2] != b"\x06\xff":
        fail.append("48-byte uplink FOpts %s, expected 06ff<margin>" % fopts[2])
    if fopts[3] != b"":
        fail.append("answers sent once must be forgotten: %s" % fopts[3])


def check_max_payload(fail):
    """N = M - 8 (RP002-1.0.4 §5.1.6, §5.2.6): the largest FRMPayload goes, one more is refused."""
    got = []
    for region, dr, n in (("EU868", 0, 51), ("EU868", 5, 242), ("US915", 0, 11), ("US915", 3, 242)):
        clock = VirtualClock()
        net = TestNet(clock, APP_KEY)
        net.answer_data = False
        mac = node(net, clock, region=region)
        abp(net, mac)
        mac.state.dr = dr
        out = []

        async def run():
            out.append(await mac.send(1, bytes(n), max_wait_ms=HOUR))
            out.append(await mac.send(1, bytes(n + 1), max_wait_ms=HOUR))

        clock.run(run())
        got.append((region, dr, out[0].status, out[1].status))
        if (out[0].status, out[1].status) != ("ok", "too_long"):
            fail.append("%s DR%d: %d B %s, %d B %s" % (region, dr, n, out[0].status, n + 1,
                                                      out[1].status))  # fmt: skip
        ups = data_uplinks(net)
        if len(ups) != 1 or len(ups[0][1]) != n + 13:
            fail.append("%s DR%d: PHYPayload of %d B expected" % (region, dr, n + 13))


CHECKS = (
    ("adr_backoff", check_adr_backoff),
    ("confirmed_retransmission", check_confirmed_retransmission),
    ("us915_sub_band_and_chmask", check_us915),
    ("duty_cycle", check_duty_cycle),
    ("channel_free_while_the_clock_ticks", check_channel_free_while_the_clock_ticks),
    ("class_c_through_duty_cycle", check_class_c_through_duty_cycle),
    ("class_c_before_activation", check_class_c_before_activation),
    ("join_nonce_replay", check_join_nonces),
    ("abp_reboots", check_abp_reboots),
    ("fopts_whole_answers", check_fopts_whole_answers),
    ("fopts_dev_status_48", check_fopts_dev_status_48),
    ("max_payload", check_max_payload),
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
