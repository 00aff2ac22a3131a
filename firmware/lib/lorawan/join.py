"""OTAA activation: Join-Request, Join-Accept, session keys and the join loop.

L2 1.0.4 (TS001-1.0.4) §6.2.5 Join-Request (DevNonce is a counter persisted before each
request), §6.2.6 Join-Accept (encrypted with AES-*decrypt* by the network, so the device runs
AES-*encrypt*; MIC over the decrypted fields; JoinNonce must grow), §7 join back-off
(:mod:`lorawan.joinbudget`, kept through deep sleep and power loss). A module
of its own, imported by :meth:`lorawan.mac.Mac.join` on first use, so a node waking from deep
sleep with a session (the usual uplink cycle) never loads it.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import struct

from hal.aes import aes
from hal.radio import time_on_air_ms

from lorawan import frame
from lorawan import status as st
from lorawan.crypto import Cmac
from lorawan.frame import B0, FrameError
from lorawan.joinbudget import JoinBudget
from lorawan.session import FLAG_CLASS_C, FLAG_JOINED, Keys, State, pack_nonces

_JOIN_ACCEPT_DELAY1_MS = const(5000)  # RP002 §5.1.9 / §5.2.9
_JOIN_JITTER_MS = const(3000)  # random extra wait between join attempts (L2 §7)
_BLOCK = const(16)
_JOIN_REQ_LEN = const(23)  # L2 §6.2.5
_JA_LEN = const(17)  # L2 §6.2.6, without CFList
_JA_CFLIST_LEN = const(33)  # with a 16-byte CFList
_KEY_NONCES = "nonces"


class JoinResult:
    def __init__(self, status, attempts=0, dev_addr=0):
        self.status = status
        self.attempts = attempts
        self.dev_addr = dev_addr

    @property
    def ok(self):
        return self.status == st.JOINED


class JoinAccept:
    """A verified Join-Accept (L2 §6.2.6); ``cflist`` is the raw 16 bytes or None."""

    def __init__(self, join_nonce, net_id, dev_addr, dl_settings, rx_delay, cflist):
        self.join_nonce = join_nonce
        self.net_id = net_id
        self.dev_addr = dev_addr
        self.dl_settings = dl_settings
        self.rx_delay = rx_delay
        self.cflist = cflist


def derive_session_keys(app_key, join_nonce, net_id, dev_nonce):
    """(NwkSKey, AppSKey) for LoRaWAN 1.0.x (L2 1.0.4 §6.2.6); nonces and NetID as integers."""
    cipher = aes(bytes(app_key), 1)
    blk = bytearray(_BLOCK)
    for i in range(3):
        blk[1 + i] = (join_nonce >> (8 * i)) & 0xFF
        blk[4 + i] = (net_id >> (8 * i)) & 0xFF
    blk[7] = dev_nonce & 0xFF
    blk[8] = (dev_nonce >> 8) & 0xFF
    blk[0] = 0x01
    nwk = bytes(cipher.encrypt(blk))
    blk[0] = 0x02
    app = bytes(cipher.encrypt(blk))
    return nwk, app


def join_accept_decrypt(app_key, phy):
    """Plaintext Join-Accept (MHDR kept) from the bytes on air: AES-*encrypt* each block (§6.2.6).

    The caller has checked that ``len(phy)`` is 17 or 33.
    """
    cipher = aes(bytes(app_key), 1)
    out = bytearray(phy)
    blk = bytearray(_BLOCK)
    res = bytearray(_BLOCK)
    p = 1
    while p < len(out):
        for i in range(_BLOCK):
            blk[i] = out[p + i]
        cipher.encrypt(blk, res)
        for i in range(_BLOCK):
            out[p + i] = res[i]
        p += _BLOCK
    return out


def build_join_request(buf, join_eui, dev_eui, dev_nonce, app_cmac):
    """Join-Request at ``buf[B0:B0+23]`` (L2 §6.2.5); EUIs are 8 bytes in on-air (LE) order."""
    o = B0
    buf[o] = 0x00  # MHDR: MType Join-Request, Major R1
    for i in range(8):
        buf[o + 1 + i] = join_eui[i]
        buf[o + 9 + i] = dev_eui[i]
    struct.pack_into("<H", buf, o + 17, dev_nonce)
    # MIC = CMAC(AppKey, MHDR | JoinEUI | DevEUI | DevNonce) — no B0 for joins
    app_cmac.mic_into(buf, o, 19, buf, o + 19)
    return _JOIN_REQ_LEN


def parse_join_accept(phy, app_key, app_cmac):
    """Decrypt and verify a Join-Accept.

    Raises :class:`FrameError` ("short", "mtype", "mic_fail").
    """
    n = len(phy)
    if n != _JA_LEN and n != _JA_CFLIST_LEN:
        raise FrameError("short")
    if phy[0] != 0x20:  # MHDR: MType Join-Accept, Major R1
        raise FrameError("mtype")
    plain = join_accept_decrypt(app_key, phy)
    if not app_cmac.mic_matches(plain, 0, n - 4, plain, n - 4):  # over the *decrypted* fields
        raise FrameError("mic_fail")
    join_nonce = plain[1] | (plain[2] << 8) | (plain[3] << 16)
    net_id = plain[4] | (plain[5] << 8) | (plain[6] << 16)
    dev_addr = struct.unpack_from("<I", plain, 7)[0]
    cflist = bytes(plain[13:29]) if n == _JA_CFLIST_LEN else None
    return JoinAccept(join_nonce, net_id, dev_addr, plain[11], plain[12], cflist)


async def run(mac, max_attempts):
    """The join loop of :meth:`lorawan.mac.Mac.join` (L2 1.0.4 §6.2, §7)."""
    region = mac.region
    app_cmac = Cmac(mac._app_key)
    plan = State()
    mac._default_plan(plan)
    budget = JoinBudget(mac.clock, mac._nvs, mac._rtc)
    for attempt in range(max_attempts):
        dr = region.join_drs[attempt % len(region.join_drs)]
        sf, bw = region.DR_TABLE[dr]
        toa = time_on_air_ms(sf, bw, _JOIN_REQ_LEN)
        while True:
            wait = budget.wait_ms(toa)  # the §7 budget first, then the sub-band duty cycle
            if wait <= 0:
                ch, wait = mac._pick_channel(dr, region.join_channels(plan), plan)
                if ch >= 0:
                    break
                if wait < 0:
                    return JoinResult(st.NO_CHANNEL, attempt)
            await mac.clock.sleep_ms(wait)
        dev_nonce = mac._next_dev_nonce
        if dev_nonce > 0xFFFF:
            return JoinResult(st.NONCES_EXHAUSTED, attempt)
        # DevNonce persisted BEFORE the Join-Request goes out (L2 1.0.4 §6.2.5, RadioLib#1480)
        mac._next_dev_nonce = dev_nonce + 1
        mac._nvs.save(_KEY_NONCES, pack_nonces(mac._next_dev_nonce, mac._last_join_nonce))
        budget.charge(toa)  # the airtime too: a reset during TX must not hand it back
        n = build_join_request(mac._buf, mac._join_eui, mac._dev_eui, dev_nonce, app_cmac)
        freq = region.channel_freq(plan, ch)
        mac.status.join_attempts += 1
        mac.status.tx_frames += 1
        payload = memoryview(mac._buf)[frame.B0 : frame.B0 + n]
        tx_done = await mac.radio.transmit(freq, sf, bw, region.tx_power_dbm(0), payload)
        mac._account(freq, toa, tx_done, 1)
        accept = await mac._windows(
            plan, tx_done, ch, dr, _JOIN_ACCEPT_DELAY1_MS, 0,
            lambda rx: _accept(mac, rx, app_cmac),
        )  # fmt: skip
        if accept is not None:
            _apply(mac, accept, dev_nonce, plan)
            budget.reset()
            mac.status.joins += 1
            return JoinResult(st.JOINED, attempt + 1, mac.state.dev_addr)
        mac.status.no_join_accept += 1
        # per-device random jitter on top of the back-off (L2 §7)
        await mac.clock.sleep_ms(mac._rng.randrange(_JOIN_JITTER_MS))
    return JoinResult(st.NO_JOIN_ACCEPT, max_attempts)


def _accept(mac, rx, app_cmac):
    try:
        ja = parse_join_accept(rx.data, mac._app_key, app_cmac)
    except frame.FrameError as exc:
        mac.status.drop(exc.reason)
        return None
    except Exception:  # nothing from the air may raise out of the MAC
        mac.status.drop("other")
        return None
    if mac._last_join_nonce >= 0 and ja.join_nonce <= mac._last_join_nonce:
        mac.status.drop("join_nonce")  # replayed Join-Accept (L2 1.0.4 §6.2.6)
        return None
    return ja


def _apply(mac, ja, dev_nonce, plan):
    region = mac.region
    nwk, app = derive_session_keys(mac._app_key, ja.join_nonce, ja.net_id, dev_nonce)
    s = plan
    s.dev_addr = ja.dev_addr
    s.nwk_s_key = nwk
    s.app_s_key = app
    s.fcnt_up = 0
    s.nvs_fcnt = 0
    s.fcnt_down = -1
    offset = (ja.dl_settings >> 4) & 0x07
    if offset <= region.max_rx1_offset:
        s.rx1_dr_offset = offset
    rx2 = ja.dl_settings & 0x0F
    if region.valid_rx_dr(rx2):
        s.rx2_dr = rx2
    s.rx_delay_s = (ja.rx_delay & 0x0F) or 1
    if ja.cflist is not None:
        region.apply_cflist(s, ja.cflist)  # as if NewChannelReq came (L2 §6.2.6)
    s.flags |= FLAG_JOINED
    if mac.state.flags & FLAG_CLASS_C:
        s.flags |= FLAG_CLASS_C
    mac._last_join_nonce = ja.join_nonce
    mac._nvs.save(_KEY_NONCES, pack_nonces(mac._next_dev_nonce, mac._last_join_nonce))
    mac.state = s
    mac._keys = Keys(nwk, app)
    mac._answers_len = 0
    mac._save_nvs()  # a new session always goes to NVS
