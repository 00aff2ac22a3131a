"""Session keys and the MAC state that must survive deep sleep and power loss.

What is kept and why (L2 1.0.4 §4.3.1.5, §6.2.5; TR007 §4.13; RadioLib#1031): the
session keys and DevAddr, both frame counters, and every setting MAC commands change (data
rate, power, NbTrans, channel plan and mask, RX1/RX2 parameters, RX delay, duty cycle, ADR
counter, answers still owed to the network). Losing any of them after deep sleep breaks ADR or
gets uplinks dropped as replays (pycom-micropython-sigfox#68).

The blob is fixed-size little-endian with a magic, a version and a CRC-32 so that garbage in RTC
memory after a cold start is recognised and ignored.
"""

try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef]
        return x


import binascii
import struct

from lorawan.crypto import Cmac, FrameCipher

_MAGIC = const(0xC7)
_VERSION = const(1)
_FMT = "<BBBI16s16sIIiBBIBBBBBHB15s16I16s16I10sI"
_SIZE = struct.calcsize(_FMT)
_HEAD_FMT = "<BBBI16s16sIIiBBIBBBBBHB"  # the scalar fields; then sticky, channels, mask, CRC
_HEAD = struct.calcsize(_HEAD_FMT)
_NONCE_FMT = "<BHi"  # magic, next DevNonce, last JoinNonce (-1 = none yet)

FLAG_JOINED = const(1)
FLAG_CLASS_C = const(2)
FLAG_ACK_PENDING = const(4)  # a confirmed downlink waits for its ACK (L2 §4.3.1.2)
FLAG_ADR = const(8)
FLAG_ABP = const(16)


class Keys:
    """The per-session AES objects (built once per join, reused for every frame)."""

    def __init__(self, nwk_s_key, app_s_key):
        self.nwk_cmac = Cmac(nwk_s_key)
        # FPort 0 encryption and the MIC use the same key: share its ECB object
        self.nwk_cipher = FrameCipher(nwk_s_key, self.nwk_cmac._aes)
        self.app_cipher = FrameCipher(app_s_key)


class State:
    """Everything the MAC must remember between uplinks (see the module docstring)."""

    def __init__(self):
        self.flags = 0
        self.dev_addr = 0
        self.nwk_s_key = bytes(16)
        self.app_s_key = bytes(16)
        self.fcnt_up = 0  # next uplink FCnt to use (32-bit)
        self.nvs_fcnt = 0  # FCnt written to NVS last; every FCnt sent is < nvs_fcnt + N
        self.fcnt_down = -1  # last accepted downlink FCnt, -1 = none in this session
        self.rx1_dr_offset = 0
        self.rx2_dr = 0
        self.rx2_freq = 0
        self.rx_delay_s = 1  # RECEIVE_DELAY1 (RP §5.1.9 / L2 §3.3.1)
        self.dr = 0
        self.tx_power = 0  # TXPower index (0 = max EIRP)
        self.nb_trans = 1
        self.max_dcycle = 0  # DutyCycleReq: aggregated duty cycle 1 / 2^max_dcycle
        self.adr_ack_cnt = 0
        self.sticky = bytearray(15)  # MAC answers repeated until a class A downlink
        self.sticky_len = 0
        self.ch_freq = [0] * 16
        self.ch_dr = bytearray(16)
        self.ch_dl = [0] * 16
        self.mask = bytearray(10)
        self._blob = None  # pack() buffer, allocated on first use

    def pack(self):
        """The blob in a buffer this State reuses (no large temporaries: RTC saves it per frame).

        The buffer is overwritten by the next pack(); stores copy it or write it out at once.
        """
        out = self._blob
        if out is None:
            out = self._blob = bytearray(_SIZE)
        struct.pack_into(
            _HEAD_FMT, out, 0, _MAGIC, _VERSION, self.flags, self.dev_addr, self.nwk_s_key,
            self.app_s_key, self.fcnt_up, self.nvs_fcnt, self.fcnt_down, self.rx1_dr_offset,
            self.rx2_dr, self.rx2_freq, self.rx_delay_s, self.dr, self.tx_power, self.nb_trans,
            self.max_dcycle, self.adr_ack_cnt, self.sticky_len,
        )  # fmt: skip
        p = _HEAD
        for i in range(15):
            out[p + i] = self.sticky[i]
        p += 15
        for i in range(16):
            struct.pack_into("<I", out, p + 4 * i, self.ch_freq[i])
            out[p + 64 + i] = self.ch_dr[i]
            struct.pack_into("<I", out, p + 80 + 4 * i, self.ch_dl[i])
        p += 144
        for i in range(10):
            out[p + i] = self.mask[i]
        crc = binascii.crc32(memoryview(out)[: _SIZE - 4]) & 0xFFFFFFFF
        struct.pack_into("<I", out, _SIZE - 4, crc)
        return out

    def to_bytes(self):
        """An immutable copy of :meth:`pack` (for callers that keep it)."""
        return bytes(self.pack())

    @staticmethod
    def from_bytes(blob):
        """A :class:`State`, or None for a missing, torn or foreign blob (never raises)."""
        if blob is None or len(blob) != _SIZE:
            return None
        if blob[0] != _MAGIC or blob[1] != _VERSION:
            return None
        crc = struct.unpack_from("<I", blob, _SIZE - 4)[0]
        if binascii.crc32(memoryview(blob)[: _SIZE - 4]) & 0xFFFFFFFF != crc:
            return None
        v = struct.unpack(_FMT, blob)
        s = State()
        (s.flags, s.dev_addr, s.nwk_s_key, s.app_s_key, s.fcnt_up, s.nvs_fcnt, s.fcnt_down,
         s.rx1_dr_offset, s.rx2_dr, s.rx2_freq, s.rx_delay_s, s.dr, s.tx_power, s.nb_trans,
         s.max_dcycle, s.adr_ack_cnt, s.sticky_len) = v[2:19]  # fmt: skip
        s.sticky = bytearray(v[19])
        s.ch_freq = list(v[20:36])
        s.ch_dr = bytearray(v[36])
        s.ch_dl = list(v[37:53])
        s.mask = bytearray(v[53])
        if s.sticky_len > 15:
            return None
        return s


def peek(blob):
    """(flags, NwkSKey, nvs_fcnt) of a valid State blob without building a State, or None."""
    if blob is None or len(blob) != _SIZE or blob[0] != _MAGIC or blob[1] != _VERSION:
        return None
    crc = struct.unpack_from("<I", blob, _SIZE - 4)[0]
    if binascii.crc32(memoryview(blob)[: _SIZE - 4]) & 0xFFFFFFFF != crc:
        return None
    return blob[2], bytes(blob[7:23]), struct.unpack_from("<I", blob, 43)[0]


def pack_nonces(next_dev_nonce, last_join_nonce):
    return struct.pack(_NONCE_FMT, _MAGIC, next_dev_nonce, last_join_nonce)


def unpack_nonces(blob):
    """(next DevNonce, last JoinNonce); (0, -1) when nothing was ever stored (first power-up)."""
    if blob is None or len(blob) != struct.calcsize(_NONCE_FMT) or blob[0] != _MAGIC:
        return 0, -1
    _, dev_nonce, join_nonce = struct.unpack(_NONCE_FMT, blob)
    return dev_nonce, join_nonce
