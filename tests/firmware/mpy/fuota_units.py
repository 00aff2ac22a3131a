"""Harness: the FUOTA packages on golden vectors and hostile input (MicroPython and CPython).

Usage: ``fuota_units.py VECTOR_DIR TMP_DIR``. Checks: Ed25519 on RFC 8032 §7.1 (and tampered
copies) with the pure SHA-512; TS004 key derivation and the TS005 FEC decoder on
protocol/vectors/fuota.json (every fragment subset that leaves the file determined); hostile input
to the agent: the truncated vectors, 3,000 random payloads per port, fragments with an index or
N out of range or the wrong size, sessions too big or with an unknown matrix, more losses than
the matrix holds, replayed and forged multicast frames. Prints ``{"failures", "checked"}``.
"""

import json
import random
import sys
from binascii import unhexlify

from fuota import fragdecoder as fd
from fuota.agent import Agent
from fuota.ed25519 import verify
from fuota.mcsetup import mc_kekey, mc_session_keys
from fuota.sha512 import sha512_pure
from hal.radio import RxFrame
from hal.sim_radio import SimRadio
from hal.storage import DictStore
from hal.vclock import VirtualClock
from lorawan import frame
from lorawan.mac import Mac
from lorawan.session import Keys

vec_dir, tmp = sys.argv[1], sys.argv[2]
APP_KEY_A = bytes(range(0x30, 0x40))
failures = []
checked = {}


def check(kind, ok, what):
    checked[kind] = checked.get(kind, 0) + 1
    if not ok:
        failures.append(kind + ": " + what)


ed = json.load(open(vec_dir + "/ed25519.json"))
for v in ed["ed25519"]:
    pk, msg, sig = unhexlify(v["public_key"]), unhexlify(v["message"]), unhexlify(v["signature"])
    check("ed25519", verify(pk, msg, sig), v["source"])
    bad = bytearray(sig)
    bad[5] ^= 1
    check("ed25519_tampered", not verify(pk, msg, bytes(bad)), v["source"])
    check("ed25519_tampered", not verify(pk, msg + b"x", sig), v["source"])
    check("ed25519_malformed", not verify(pk[:31], msg, sig) and not verify(pk, msg, sig[:63]), "")
for v in ed["sha512"]:
    check("sha512", sha512_pure(unhexlify(v["message"])) == unhexlify(v["digest"]), v["source"])

fv = json.load(open(vec_dir + "/fuota.json"))
for v in fv["mc_keys"]:
    if "mc_kekey" in v:
        # mc_kekey() takes the GenAppKey: check its second step from the vector's McRootKey
        from fuota.mcsetup import _encrypt

        check(
            "mc_kekey",
            _encrypt(unhexlify(v["mc_root_key"]), bytes(16)) == unhexlify(v["mc_kekey"]),
            "",
        )
    if "gen_app_key" in v:
        from fuota.mcsetup import _encrypt

        got = _encrypt(unhexlify(v["gen_app_key"]), bytes(16))
        check("mc_root_key", got == unhexlify(v["mc_root_key"]), v["what"])
    if "mc_app_s_key" in v:
        nwk, app = mc_session_keys(unhexlify(v["mc_key"]), int(v["mc_addr"], 16))
        check("mc_session_keys", app == unhexlify(v["mc_app_s_key"]), "McAppSKey")
        check("mc_session_keys", nwk == unhexlify(v["mc_nwk_s_key"]), "McNwkSKey")

for v in fv["fec"]:
    size = v["frag_size"]
    frags = [unhexlify(h) for h in v["fragments"]]
    data = unhexlify(v["data"])
    m = len(data) // size
    for trial in range(12):
        random.seed(trial)
        lost = set()
        while len(lost) < trial % 5 + 1:
            lost.add(random.getrandbits(8) % m)
        dec = fd.FragDecoder(tmp + "/fec.bin", m, size, 64)
        for n in range(1, len(frags) + 1):
            if n - 1 not in lost:
                dec.add(n, frags[n - 1])
        buf = bytearray(m * size)
        if dec.done:
            dec.file.read_into(0, buf, m * size)
        dec.close()
        # with 5 lost of 10 and 10 coded the system can still be rank-deficient: compare with
        # the node's own claim only when it says it is done, and require done for 1-2 losses
        if dec.done:
            check("fec_decode", bytes(buf) == data, "lost %r" % sorted(lost))
        elif len(lost) <= 2:
            check("fec_decode", False, "not done with lost %r" % sorted(lost))

# ---------------------------------------------------------------- a power cut in a session
from fuota.fragsession import Fragmentation  # noqa: E402

v = fv["fec"][0]
size = v["frag_size"]
frags = [unhexlify(h) for h in v["fragments"]]
data = unhexlify(v["data"])
m = len(data) // size
done_calls = []
path = tmp + "/cut.bin"


def session_obj():
    return Fragmentation(path, 4096, 64, lambda p, n: done_calls.append(n), None, 2)


def frag_cmd(n):
    return bytes([0x08, n & 0xFF, n >> 8]) + frags[n - 1]


f1 = session_obj()
f1._drop_session()
f1.handle(bytes([0x02, 0x01, m, 0, size, 0, 0, 0, 0, 0, 0]), bytearray())
for n in (1, 2, 3, 4, 5):
    f1.handle(frag_cmd(n), bytearray())
f1 = None  # power cut: RAM gone, flash kept
f2 = session_obj()
check("resume", f2.resume(), "session back from flash")
check("resume", f2.session is not None and f2.session.decoder.known >= 4, "rows in place")
for n in (6, 8, 9, 10, 11, 12, 13, 14, 15):  # fragment 7 lost, coded ones make up for it
    f2.handle(frag_cmd(n), bytearray())
out_buf = bytearray(m * size)
if f2.session is not None and f2.session.decoder.done:
    f2.session.decoder.file.read_into(0, out_buf, m * size)
check("resume", bytes(out_buf) == data and done_calls == [m * size], "file rebuilt once")
f2.mark_applied()
f2.session.decoder.close()
f3 = session_obj()
check("resume", f3.resume() and f3.session.decoder.done and done_calls == [m * size], "no re-apply")
f3._drop_session()

# ---------------------------------------------------------------- TS003 clock sync
from fuota.clocksync import ClockSync  # noqa: E402

cclock = VirtualClock()
cs = ClockSync(cclock)
req = bytearray()
cs.request(req, True)
check("clocksync", len(req) == 6 and req[0] == 1 and req[5] == 0x10, "AppTimeReq %r" % req)
ans = bytearray()
cs.handle(bytes([0x01]) + (1000).to_bytes(4, "little") + bytes([0x05]), ans)  # wrong token
check("clocksync", cs.gps() == 0 and not cs.synced, "a wrong TokenAns changes nothing")
cs.handle(bytes([0x01]) + (1000).to_bytes(4, "little") + bytes([0x00]), ans)
check("clocksync", cs.gps() == 1000 and cs.synced and cs.token == 1, "correction applied")
cs.handle(bytes([0x01]) + (1000).to_bytes(4, "little") + bytes([0x00]), ans)  # replayed answer
check("clocksync", cs.gps() == 1000, "a replayed AppTimeAns changes nothing")
cs.handle(bytes([0x01]) + (-500 & 0xFFFFFFFF).to_bytes(4, "little") + bytes([0x01]), ans)
check("clocksync", cs.gps() == 500, "a negative correction")
ans = bytearray()
cs.handle(bytes([0x02, 0x03, 0x00]), ans)  # periodicity 3, then PackageVersionReq
check("clocksync", bytes(ans) == bytes([0x02, 0x00]) + (500).to_bytes(4, "little") + b"\x00\x01\x01",
      "DeviceAppTimePeriodicityAns + PackageVersionAns %r" % bytes(ans))  # fmt: skip
check("clocksync", cs.period_s == 1024 and not cs.due(), "period 128 x 2^3 s")
cs.handle(bytes([0x03, 0x02]), ans)  # ForceDeviceResyncReq x2
check("clocksync", cs.due(), "a forced resync is due at once")
cs.request(bytearray())
check("clocksync", cs.resync_left == 1 and not cs.due(), "the next one waits its gap")
# DeviceTimeAns (L2 §5.9) sets the time while an AppTimeAns is on its way: that answer corrects
# the DeviceTime of its request, so it must not land on top of the new time
stale_token = cs.token
cs.set_gps(1300000000)
cs.handle(bytes([0x01]) + (1299999500).to_bytes(4, "little") + bytes([stale_token]), ans)
check("clocksync", cs.gps() == 1300000000, "an answer to a request before set_gps is stale")

# ---------------------------------------------------------------- a class A node in a session
import asyncio  # noqa: E402


class QuietAir:
    def attach(self, node_id, radio):
        pass

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        pass


aclock = VirtualClock()
anvs = DictStore()
amac = Mac(SimRadio(aclock, QuietAir(), "a"), aclock, anvs, DictStore(), region="EU868")
amac.activate_abp(0x26000002, bytes(16), bytes(range(16)))
amac.state.dr = 5
aagent = Agent(amac, aclock, anvs, APP_KEY_A, bytes(32), root=tmp + "/a-", running_version="0.1.0")
aagent.time.set_gps(1000)
seen = {}


async def class_a_session():
    task = asyncio.create_task(aagent.run())
    setup_a = bytes([0x02, 0x00]) + (0x01AB0003).to_bytes(4, "little") + bytes(16)
    setup_a += (0).to_bytes(4, "little") + (10).to_bytes(4, "little")
    aagent.handle(200, setup_a)
    # session at GPS 1060 for 2^4 s on 869.525 MHz DR5
    aagent.handle(
        200, bytes([0x04, 0x00]) + (1060).to_bytes(4, "little") + bytes([4, 0x52, 0xAD, 0x84, 5])
    )
    for t_s in (30, 61, 70, 90):
        await aclock.sleep_until(t_s * 1000)
        seen[t_s] = amac.device_class
    task.cancel()


aclock.run(class_a_session())
check("class_a_session", seen == {30: "A", 61: "C", 70: "C", 90: "A"}, repr(seen))

# ---------------------------------------------------------------- hostile input


class Air:
    def attach(self, node_id, radio):
        pass

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        pass


clock = VirtualClock()
nvs = DictStore()
mac = Mac(SimRadio(clock, Air(), "n"), clock, nvs, DictStore(), region="EU868")
mac.activate_abp(0x26000001, bytes(16), bytes(range(16)))
APP_KEY = bytes(range(0x20, 0x30))
agent = Agent(mac, clock, nvs, APP_KEY, bytes(32), root=tmp + "/", running_version="0.1.0",
              max_file=4096, max_missing=8)  # fmt: skip


def safe(fport, payload):
    try:
        agent.handle(fport, payload)
        return True
    except Exception as exc:
        failures.append("raised %r on %d %r" % (exc, fport, payload))
        return False


for v in fv["truncated"]:
    port = {"clocksync": 202, "multicastsetup": 200, "fragmentation": 201}[v["package"]]
    check("truncated", safe(port, unhexlify(v["hex"])), v["hex"])
random.seed(99)
for port in (200, 201, 202):
    for i in range(3000):
        n = random.getrandbits(6) % 40
        p = bytes(random.getrandbits(8) for _ in range(n))
        if i % 3 == 0 and n:
            p = bytes([random.getrandbits(3)]) + p[1:]  # mostly known CIDs, so bodies are parsed
        check("random", safe(port, p), "")
agent.frag._drop_session()
agent.outbox = []


def setup(nb, size, matrix=0, idx=0, padding=0):
    agent.outbox = []
    agent.handle(
        201,
        bytes(
            [0x02, 0x01 | (idx << 4), nb & 0xFF, nb >> 8, size, matrix << 3, padding, 0, 0, 0, 0]
        ),
    )
    return agent.outbox[-1][2][1] if agent.outbox else None


check("setup_too_big", setup(200, 48) == 0x02, "NbFrag x FragSize over max_file: not enough memory")
check("setup_matrix", setup(10, 10, matrix=1) == 0x01, "unknown matrix refused")
check("setup_zero", setup(0, 10) & 0x02 == 0x02, "NbFrag 0 refused")
check("setup_padding", setup(10, 10, padding=10) & 0x02 == 0x02, "padding >= FragSize refused")
check("setup_ok", setup(20, 10) == 0x00, "a session that fits")
check("other_index", setup(20, 10, idx=2) == 0x84, "a second session while one is running")
before = agent.frag.session.decoder.received
for bad in (
    bytes([0x08, 0x00, 0x00]) + bytes(10),  # N = 0
    bytes([0x08, 0x01, 0x80]) + bytes(10),  # FragIndex 2: no such session
    bytes([0x08, 0x01, 0x00]) + bytes(9),  # wrong size
    bytes([0x08, 0xFF, 0x3F]) + bytes(11),  # N max, wrong size
    bytes([0x08, 0x01]),  # truncated
):
    check("bad_fragment", safe(201, bad), repr(bad))
check("bad_fragment", agent.frag.session.decoder.received == before, "a bad fragment was taken")
# more losses than the matrix holds (max_missing 8): NotEnoughMatrixMemory in the status
for n in range(1, 11):
    agent.handle(201, bytes([0x08, n, 0]) + bytes(10))
agent.handle(201, bytes([0x08, 21, 0]) + bytes(10))  # first coded fragment, 10 rows missing
agent.outbox = []
agent.handle(201, bytes([0x01, 0x01]))
ans = agent.outbox[-1][2] if agent.outbox else b""
check("no_matrix_memory", len(ans) == 5 and ans[4] == 1, "status %r" % ans)
check("no_matrix_memory", not agent.frag.session.decoder.done, "")

# multicast: a group set up through TS004, then replays and forgeries through the MAC
mc_key = bytes(range(0x40, 0x50))
kek = mc_kekey(APP_KEY)
from hal.aes import aes  # noqa: E402

enc = bytearray(16)
aes(kek, 1).decrypt(mc_key, enc)  # what the server sends (TS004 §3.1.2)
addr = 0x01AB0002
agent.outbox = []
agent.handle(
    200,
    bytes([0x02, 0x01])
    + addr.to_bytes(4, "little")
    + bytes(enc)
    + (0).to_bytes(4, "little")
    + (100).to_bytes(4, "little"),
)
check("mc_setup", agent.outbox and agent.outbox[-1][2] == b"\x02\x01", "McGroupSetupAns")
mac.multicast.session(1, 869525000, 5, clock.ticks_ms(), 100000)
nwk, app = mc_session_keys(mc_key, addr)
keys = Keys(nwk, app)
buf = bytearray(frame.BUF_SIZE)


def mc_frame(fcnt, payload, k=keys, mtype=frame.UNCONFIRMED_DOWN, a=addr):
    n = frame.build_data(buf, mtype, a, 0, fcnt, b"", 0, 201, payload, len(payload), k)
    return bytes(buf[frame.B0 : frame.B0 + n])


def feed(phy):
    try:
        return mac._accept_downlink(RxFrame(phy), False)
    except Exception as exc:
        failures.append("MAC raised %r" % exc)
        return None


good = mc_frame(5, b"\x00")
check("mc_accept", feed(good) is not None, "a good group frame")
check("mc_replay", feed(good) is None, "the same frame again")
check("mc_old", feed(mc_frame(4, b"\x00")) is None, "an older McFCount")
check("mc_forged", feed(mc_frame(6, b"\x00", Keys(bytes(16), bytes(16)))) is None, "wrong keys")
check("mc_confirmed", feed(mc_frame(7, b"\x00", mtype=frame.CONFIRMED_DOWN)) is None, "confirmed")
check("mc_past_max", feed(mc_frame(101, b"\x00")) is None, "past maxMcFCount")
for i in range(300):
    random.seed(1000 + i)
    g = bytearray(good)
    g[random.getrandbits(5) % len(g)] ^= 1 << (i % 8)
    check("mc_bitflip", feed(bytes(g)) is None, "")
    check("mc_short", feed(bytes(good[: i % 12])) is None, "")
check("mc_drops", mac.multicast.drops.get("replay", 0) >= 2, repr(mac.multicast.drops))
# a cold boot: the group comes back from NVS, its McFCount ahead by the unsaved margin, so a
# frame heard before the power cut is not taken again
from lorawan.multicast import Groups  # noqa: E402

after = Groups(clock, nvs)
g1 = after.groups[1]
check("mc_persist", g1 is not None and g1.addr == addr and g1.nwk_s_key == nwk, "group restored")
check("mc_persist", g1 is not None and g1.last >= 5, "McFCount resumes at or past the last heard")
after.session(1, 869525000, 5, clock.ticks_ms(), 100000)
check("mc_persist", after.accept(RxFrame(good)) is None, "replay after a cold boot")
check("mc_persist", after.accept(RxFrame(mc_frame(40, b"\x00"))) is not None, "a new frame")
check("agent_errors", agent.errors == 0, "agent.errors %d" % agent.errors)
print(json.dumps({"failures": failures[:20], "checked": checked}))
sys.exit(1 if failures else 0)
