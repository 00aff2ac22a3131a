"""Harness: hostile downlinks never raise out of the MAC and never change session state.

Feeds the MAC (ABP session, under MicroPython or CPython) with random byte strings, mutations of
a valid downlink (bit flips, truncation, extension, byte swaps, wrong DevAddr, replays) through
the class A handler and through the sim radio while in class C, and checks after each that
nothing raised, the State blob is byte-identical and one more drop was counted. Correctly
signed frames with garbage MAC commands must not raise either and must leave the session
(DevAddr, keys, uplink counter) intact.

Usage: ``hostile.py COUNT``. Prints one JSON line; exits 1 on a failure.
"""

import json
import sys

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


def downlink(keys, fcnt, fport=5, payload=b"ok", fopts=b"", mtype=frame.UNCONFIRMED_DOWN):
    buf = bytearray(frame.BUF_SIZE)
    n = frame.build_data(buf, mtype, ADDR, 0, fcnt, fopts, len(fopts), fport, payload,
                         len(payload), keys)  # fmt: skip
    return bytes(buf[frame.B0 : frame.B0 + n])


def mutate(rng, valid):
    b = bytearray(valid)
    kind = rng.randrange(7)
    if kind == 0:
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    elif kind == 1:
        b = b[: rng.randrange(len(b))]
    elif kind == 2:
        for _ in range(1 + rng.randrange(20)):
            b.append(rng.randrange(256))
    elif kind == 3:
        i = rng.randrange(len(b))
        j = rng.randrange(len(b))
        b[i], b[j] = b[j], b[i]
    elif kind == 4:
        b[1 + rng.randrange(4)] ^= 1 + rng.randrange(255)  # another DevAddr
    elif kind == 5:
        b[5] = rng.randrange(256)  # FCtrl: FOptsLen and flags
    else:
        for _ in range(1 + rng.randrange(4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    if b == bytearray(valid):
        b[0] ^= 0x80  # a mutation must differ from the signed original
    return bytes(b)


def main():
    count = int(sys.argv[1])
    rng = Rng(4242)
    clock = VirtualClock()
    radio = SimRadio(clock, NoNet(), "h")
    mac = Mac(radio, clock, DictStore(), DictStore(), region="EU868")
    mac.activate_abp(ADDR, NWK, APP)
    keys = Keys(NWK, APP)
    failures = []
    fed = 0
    # one valid downlink first, so replays of it exist
    valid = downlink(keys, 7, payload=b"valid")
    if mac._accept_downlink(RxFrame(valid), True) is None:
        failures.append("the valid downlink was refused")
    snapshot = mac.state.to_bytes()
    fresh = downlink(keys, 8, payload=b"fresh")  # signed and never accepted: MIC must refuse

    def feed(data, class_a):
        before = mac.status.dropped()
        try:
            got = mac._accept_downlink(RxFrame(data), class_a)
        except BaseException as exc:
            failures.append("raised %r on %s" % (exc, data))
            return
        if got is not None:
            failures.append("accepted a hostile frame")
        if mac.state.to_bytes() != snapshot:
            failures.append("state changed")
        if mac.status.dropped() != before + 1:
            failures.append("not counted")

    for i in range(count):
        if i % 3 == 0:
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        else:
            data = mutate(rng, fresh if i & 1 else valid)
        feed(data, i & 1 == 0)
        fed += 1
    feed(valid, True)  # an exact replay
    fed += 1
    feed(b"", True)
    fed += 1

    # through the radio while listening in class C
    async def class_c():
        mac.set_class("C")
        for _ in range(50):
            await clock.sleep_ms(2000)  # longer than a frame at SF12: one at a time on the air
            radio.deliver(mutate(rng, valid), 869525000, "SF12BW125", clock.ticks_ms())
        await clock.sleep_ms(5000)
        mac.set_class("A")
        await clock.sleep_ms(10)

    before = mac.status.dropped()
    try:
        clock.run(class_c())
    except BaseException as exc:
        failures.append("class C raised %r" % (exc,))
    mac.state.flags &= ~2  # FLAG_CLASS_C; the class switch itself is not session state
    if mac.state.to_bytes() != snapshot:
        failures.append("state changed through class C")
    class_c_drops = mac.status.dropped() - before
    if class_c_drops < 40:  # some may overlap on the air; most must be heard and dropped
        failures.append("only %d class C frames dropped" % class_c_drops)

    # correctly signed frames with garbage MAC commands
    signed = 0
    for k in range(count // 4):
        fcnt = 100 + k
        garbage = bytes(rng.randrange(256) for _ in range(rng.randrange(16)))
        if k & 1:
            data = downlink(keys, fcnt, fport=0, payload=garbage)
        else:
            data = downlink(keys, fcnt, fport=-1, payload=b"", fopts=garbage)
        try:
            mac._accept_downlink(RxFrame(data, snr=rng.randrange(80) - 40), True)
            signed += 1
        except BaseException as exc:
            failures.append("signed garbage raised %r" % (exc,))
        s = mac.state
        if s.dev_addr != ADDR or s.nwk_s_key != NWK or s.app_s_key != APP or s.fcnt_up != 0:
            failures.append("signed garbage changed the session")
            break

    out = {"fed": fed, "class_c_drops": class_c_drops, "signed": signed,
           "drops": mac.status.drops, "failures": failures[:10], "failure_count": len(failures)}  # fmt: skip
    print(json.dumps(out))
    sys.exit(1 if failures else 0)


main()
