"""Harness: the firmware's crypto and frame code on protocol/vectors/lorawan.json.

Runs under the MicroPython unix port and CPython alike. Usage: ``vectors.py PATH_TO_JSON``.
Prints one JSON line ``{"checked": {...}, "failures": [...]}`` and exits 1 on any failure.
"""

import json
import sys
from binascii import hexlify, unhexlify

from lorawan import frame
from lorawan.crypto import Cmac
from lorawan.join import build_join_request, derive_session_keys, parse_join_accept
from lorawan.session import Keys

MTYPES = {
    "join_request": 0,
    "join_accept": 1,
    "unconfirmed_data_up": 2,
    "unconfirmed_data_down": 3,
    "confirmed_data_up": 4,
    "confirmed_data_down": 5,
}

failures = []
checked = {}


def h(s):
    return unhexlify(s)


def hx(b):
    return hexlify(bytes(b)).decode()


def rev(s):
    b = h(s)
    return bytes(b[i] for i in range(len(b) - 1, -1, -1))


def int_le(b):
    v = 0
    for i in range(len(b) - 1, -1, -1):
        v = (v << 8) | b[i]
    return v


def check(kind, ok, what):
    checked[kind] = checked.get(kind, 0) + 1
    if not ok:
        failures.append(kind + ": " + what)


def run(path):
    with open(path) as f:
        vec = json.load(f)
    for e in vec["cmac"]:
        m = h(e["message"])
        got = Cmac(h(e["key"])).compute(m, 0, len(m))
        check("cmac", hx(got) == e["cmac"], e["source"])
    for e in vec["join_request"]:
        buf = bytearray(frame.BUF_SIZE)
        n = build_join_request(
            buf,
            rev(e["join_eui_msb"]),
            rev(e["dev_eui_msb"]),
            e["dev_nonce"],
            Cmac(h(e["app_key"])),
        )
        got = hx(buf[frame.B0 : frame.B0 + n])
        check("join_request", got == e["phy"] and got[-8:] == e["mic"], e["source"])
    for e in vec["join_accept"]:
        key = h(e["app_key"])
        ja = parse_join_accept(h(e["phy"]), key, Cmac(key))
        ok = (
            ja.join_nonce == e["join_nonce"]
            and ja.net_id == int_le(rev(e["net_id_msb"]))
            and ja.dev_addr == int_le(rev(e["dev_addr_msb"]))
            and ja.dl_settings == e["dl_settings"]
            and ja.rx_delay == e["rx_delay"]
        )
        want_cf = e["cflist_hz"]
        if want_cf is None:
            ok = ok and ja.cflist is None
        else:
            got_cf = [
                (ja.cflist[3 * i] | (ja.cflist[3 * i + 1] << 8) | (ja.cflist[3 * i + 2] << 16))
                * 100
                for i in range(5)
            ]
            ok = ok and got_cf == want_cf
        check("join_accept", ok, e["source"])
        # a flipped bit anywhere must be refused with a typed reason
        bad = bytearray(h(e["phy"]))
        bad[len(bad) - 1] ^= 0x01
        try:
            parse_join_accept(bytes(bad), key, Cmac(key))
            check("join_accept", False, "tampered accepted: " + e["source"])
        except frame.FrameError as exc:
            check("join_accept", exc.reason == "mic_fail", e["source"])
    for e in vec["session_keys"]:
        nwk, app = derive_session_keys(
            h(e["app_key"]), e["join_nonce"], int_le(rev(e["net_id_msb"])), e["dev_nonce"]
        )
        check("session_keys", hx(nwk) == e["nwk_s_key"] and hx(app) == e["app_s_key"], e["source"])
    for e in vec["data"]:
        keys = Keys(h(e["nwk_s_key"]), h(e["app_s_key"]))
        mtype = MTYPES[e["mtype"]]
        addr = int_le(rev(e["dev_addr_msb"]))
        fctrl = 0
        if e["adr"]:
            fctrl |= frame.F_ADR
        if e.get("adr_ack_req"):
            fctrl |= frame.F_ADR_ACK_REQ
        if e["ack"]:
            fctrl |= frame.F_ACK
        if e.get("f_pending"):
            fctrl |= frame.F_PENDING
        fopts = h(e["fopts"])
        payload = h(e["frm_payload"])
        fport = -1 if e["fport"] is None else e["fport"]
        buf = bytearray(frame.BUF_SIZE)
        n = frame.build_data(
            buf,
            mtype,
            addr,
            fctrl,
            e["fcnt"],
            fopts,
            len(fopts),
            fport,
            payload,
            len(payload),
            keys,
        )
        got = hx(buf[frame.B0 : frame.B0 + n])
        check("data_build", got == e["phy"] and got[-8:] == e["mic"], e["source"])
        phy = h(e["phy"])
        work = bytearray(frame.BUF_SIZE)
        down = mtype in (3, 5)
        last = e["fcnt"] - 1 if e["fcnt"] > 0 else -1
        try:
            d = frame.parse_data(phy, len(phy), addr, last, keys, work, expect_down=down)
            ok = (
                d.fcnt == e["fcnt"]
                and d.fopts == fopts
                and d.fport == fport
                and d.payload == payload
                and d.ack == e["ack"]
                and d.adr == e["adr"]
            )
            check("data_parse", ok, e["source"])
        except frame.FrameError as exc:
            check("data_parse", False, e["source"] + " raised " + exc.reason)
        # the same frame again is a replay once its FCnt was accepted
        try:
            frame.parse_data(phy, len(phy), addr, e["fcnt"], keys, work, expect_down=down)
            check("data_replay", False, "replay accepted: " + e["source"])
        except frame.FrameError as exc:
            check("data_replay", exc.reason in ("replay", "mic_fail"), e["source"])
    for e in vec["fcnt"]:
        last = -1 if e["last"] is None else e["last"]
        want = -1 if e["expected"] is None else e["expected"]
        got = frame.fcnt_reconstruct(last, e["fcnt16"])
        check("fcnt", got == want, e["source"] + " got " + str(got))


run(sys.argv[1])
print(json.dumps({"checked": checked, "failures": failures}))
sys.exit(1 if failures else 0)
