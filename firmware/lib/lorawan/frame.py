"""LoRaWAN 1.0.4 PHYPayload encode/decode for the device (and the test networks that talk to it).

L2 1.0.4 §4.2 MHDR, §4.3.1 FHDR (FCtrl §4.3.1.3-§4.3.1.6, FCnt §4.3.1.5), §4.3.2 FPort,
§4.3.3 FRMPayload encryption, §4.4 MIC, §6.2.5 Join-Request, §6.2.6 Join-Accept.

Buffers: a frame is built at ``buf[_B0:]``; the 16 bytes before it hold the MIC block B0 so the
CMAC runs over ``buf[0:_B0+len]`` without a copy. :func:`build_data` writes with
``struct.pack_into`` and allocates nothing (the firmware benchmark holds it under 256 bytes).

Every decoder here raises only :class:`FrameError` (a ``ValueError``) whose ``reason`` is one of
the drop counters of :mod:`lorawan.status`; nothing received from the air raises anything else.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import struct

from lorawan.crypto import fill_b0

B0 = const(16)  # spare bytes in front of every frame buffer for B0 (L2 §4.4)
MAX_PHY = const(255)  # LoRa PHY payload limit
BUF_SIZE = const(272)  # B0 + MAX_PHY, rounded up

# MType (L2 §4.2.1, MHDR bits 7..5)
JOIN_REQUEST = const(0)
JOIN_ACCEPT = const(1)
UNCONFIRMED_UP = const(2)
UNCONFIRMED_DOWN = const(3)
CONFIRMED_UP = const(4)
CONFIRMED_DOWN = const(5)
PROPRIETARY = const(7)
_MAJOR_R1 = const(0)  # MHDR bits 1..0

DIR_UP = const(0)
DIR_DOWN = const(1)

# FCtrl bits (L2 §4.3.1.3)
F_ADR = const(0x80)
F_ADR_ACK_REQ = const(0x40)  # uplink
F_ACK = const(0x20)
F_PENDING = const(0x10)  # downlink; uplink: ClassB (RFU in 1.0.4 class A/C)

_MIN_DATA = const(12)  # MHDR 1 + FHDR 7 + MIC 4 (L2 §4.3.1)


class FrameError(ValueError):
    """A frame that must be dropped; ``reason`` names the drop counter."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


class Data:
    """A decoded data frame; ``payload`` is decrypted; ``fcnt`` is the full 32-bit counter."""

    def __init__(self, mtype, dev_addr, fctrl, fcnt, fopts, fport, payload):
        self.mtype = mtype
        self.dev_addr = dev_addr
        self.fctrl = fctrl
        self.fcnt = fcnt
        self.fopts = fopts
        self.fport = fport
        self.payload = payload

    @property
    def ack(self):
        return bool(self.fctrl & F_ACK)

    @property
    def adr(self):
        return bool(self.fctrl & F_ADR)

    @property
    def f_pending(self):
        return bool(self.fctrl & F_PENDING)

    @property
    def confirmed(self):
        return self.mtype == CONFIRMED_DOWN or self.mtype == CONFIRMED_UP


def fcnt_reconstruct(last, fcnt16):
    """Full 32-bit downlink FCnt from its 16 LSBs, or -1 for a replay (L2 §4.3.1.5).

    ``last`` is the last accepted 32-bit value, or -1 when nothing was received in this session
    (the first downlink is accepted with any value). A value that is not ahead of ``last`` is
    taken as one 16-bit roll-over ahead, as LoRaMac-node's LoRaMacCryptoGetFCntDown does.
    """
    if last < 0:
        return fcnt16
    diff = fcnt16 - (last & 0xFFFF)
    if diff > 0:
        return last + diff
    if diff == 0:
        return -1
    full = (last & 0xFFFF0000) + 0x10000 + fcnt16
    if full > 0xFFFFFFFF:
        return -1
    return full


def build_data(buf, mtype, dev_addr, fctrl, fcnt, fopts, fopts_len, fport, payload, plen, keys):
    """A data frame at ``buf[B0:]``; returns its length. Allocates nothing.

    ``fctrl`` holds the flag bits (FOptsLen is set here from ``fopts_len``); ``fport`` < 0 means
    no FPort/FRMPayload. ``keys`` is a :class:`lorawan.session.Keys`. The direction follows the
    MType, so the same code builds downlinks for the test networks.
    """
    direction = DIR_DOWN if mtype & 1 else DIR_UP
    o = B0
    struct.pack_into(
        "<BIBH",
        buf,
        o,
        (mtype << 5) | _MAJOR_R1,
        dev_addr,
        (fctrl & 0xF0) | fopts_len,
        fcnt & 0xFFFF,
    )
    p = o + 8
    for i in range(fopts_len):
        buf[p + i] = fopts[i]
    p += fopts_len
    if fport >= 0:
        buf[p] = fport
        p += 1
        for i in range(plen):
            buf[p + i] = payload[i]
        # FPort 0 carries MAC commands: encrypted with NwkSKey (L2 §4.3.3)
        cipher = keys.nwk_cipher if fport == 0 else keys.app_cipher
        cipher.crypt(buf, p, plen, dev_addr, fcnt, direction)
        p += plen
    msg_len = p - o
    fill_b0(buf, 0, dev_addr, fcnt, direction, msg_len)
    # MIC over B0 | msg with the *encrypted* FRMPayload (L2 §4.4)
    keys.nwk_cmac.mic_into(buf, 0, B0 + msg_len, buf, p)
    return msg_len + 4


def parse_data(phy, n, dev_addr, last_fcnt, keys, work, expect_down=True):
    """Verify and decrypt a data frame; returns :class:`Data` or raises :class:`FrameError`.

    Checks, in order (each a drop counter): "short" (length, FOptsLen), "mtype", "dev_addr",
    "replay" (FCnt not ahead of ``last_fcnt``), "mic_fail", "fopts_port0" (MAC commands in both
    FOpts and FPort 0, L2 §4.3.1.6). ``work`` is a :data:`BUF_SIZE` scratch buffer.
    """
    if n < _MIN_DATA or n > MAX_PHY:
        raise FrameError("short")
    mhdr = phy[0]
    mtype = mhdr >> 5
    if mhdr & 0x03 != _MAJOR_R1:
        raise FrameError("mtype")
    if expect_down:
        if mtype != UNCONFIRMED_DOWN and mtype != CONFIRMED_DOWN:
            raise FrameError("mtype")
    elif mtype != UNCONFIRMED_UP and mtype != CONFIRMED_UP:
        raise FrameError("mtype")
    addr, fctrl, fcnt16 = struct.unpack_from("<IBH", phy, 1)
    if addr != dev_addr:
        raise FrameError("dev_addr")
    fopts_len = fctrl & 0x0F
    if 8 + fopts_len + 4 > n:
        raise FrameError("short")
    fcnt = fcnt_reconstruct(last_fcnt, fcnt16)
    if fcnt < 0:
        raise FrameError("replay")
    direction = DIR_DOWN if expect_down else DIR_UP
    msg_len = n - 4
    for i in range(msg_len):
        work[B0 + i] = phy[i]
    fill_b0(work, 0, dev_addr, fcnt, direction, msg_len)
    if not keys.nwk_cmac.mic_matches(work, 0, B0 + msg_len, phy, msg_len):
        raise FrameError("mic_fail")
    p = B0 + 8
    fopts = bytes(work[p : p + fopts_len])
    p += fopts_len
    fport = -1
    payload = b""
    if p < B0 + msg_len:
        fport = work[p]
        p += 1
        plen = B0 + msg_len - p
        if fport == 0 and fopts_len:
            raise FrameError("fopts_port0")
        cipher = keys.nwk_cipher if fport == 0 else keys.app_cipher
        cipher.crypt(work, p, plen, dev_addr, fcnt, direction)
        payload = bytes(work[p : p + plen])
    return Data(mtype, addr, fctrl, fcnt, fopts, fport, payload)
