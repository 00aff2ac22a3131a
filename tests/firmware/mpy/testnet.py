"""A minimal in-process LoRaWAN network for firmware harnesses (MicroPython and CPython).

It implements the sim radio's channel interface (hal/sim_radio.py): ``attach``, ``uplink``
and delivers downlinks with ``radio.deliver``. It is built from the firmware's own frame code
plus AES-*decrypt* for Join-Accepts (what a join server does), so it is a peer for
power-loss, hostile-input and benchmark runs; the independent CPython peer used for whole
sessions is tests/firmware/netpeer.py.
"""

import struct

from hal.aes import aes
from lorawan import frame
from lorawan.crypto import Cmac
from lorawan.join import derive_session_keys
from lorawan.session import Keys

NET_ID = 0x000013


class TestNet:
    def __init__(self, clock, app_key, rx1_delay_s=1):
        self.clock = clock
        self.app_key = bytes(app_key)
        self.app_cmac = Cmac(self.app_key)
        self.radios = {}
        self.uplinks = []  # (node_id, phy bytes, freq_hz, datr, t_ms)
        self.frames = []  # decoded data uplinks: (dev_addr, fcnt, fport, payload)
        self.dev_nonces = []
        self.sessions = {}  # dev_addr -> [Keys, fcnt_down_next]
        self.next_addr = 0x26000001
        self.join_nonce = 0x10
        self.answer_joins = True
        self.rx1_delay_s = rx1_delay_s
        self.queue = []  # downlinks for the next uplink: (fport, payload, confirmed, fopts)
        self.answer_data = True  # False: a silent network (no ACKs, nothing down)
        self.ack_skip = 0  # confirmed uplinks to leave unacknowledged before acking
        self.replay_accept = None  # a Join-Accept to send again instead of a fresh one
        self.last_accept = None
        # RX1 (frequency, datr) for an uplink's (frequency, datr): EU868 keeps both
        self.rx1 = lambda freq_hz, datr: (freq_hz, datr)
        self.work = bytearray(frame.BUF_SIZE)
        self.buf = bytearray(frame.BUF_SIZE)

    def attach(self, node_id, radio):
        self.radios[node_id] = radio

    def uplink(self, node_id, phy, freq_hz, datr, t_ms):
        self.uplinks.append((node_id, bytes(phy), freq_hz, datr, t_ms))
        mtype = phy[0] >> 5
        if mtype == frame.JOIN_REQUEST and len(phy) == 23:
            mic = struct.unpack_from("<I", phy, 19)[0]
            if self.app_cmac.mic(phy, 0, 19) != mic:
                return
            dev_nonce = phy[17] | (phy[18] << 8)
            self.dev_nonces.append(dev_nonce)
            if self.answer_joins:
                self._join_accept(node_id, dev_nonce, freq_hz, datr, t_ms)
            return
        if mtype in (frame.UNCONFIRMED_UP, frame.CONFIRMED_UP) and len(phy) >= 12:
            addr = struct.unpack_from("<I", phy, 1)[0]
            sess = self.sessions.get(addr)
            if sess is None:
                return
            try:
                d = frame.parse_data(phy, len(phy), addr, -1, sess[0], self.work, False)
            except frame.FrameError:
                return
            self.frames.append((addr, d.fcnt, d.fport, d.payload))
            if not self.answer_data:
                return
            if mtype == frame.CONFIRMED_UP and self.ack_skip > 0 and not self.queue:
                self.ack_skip -= 1
                return
            if self.queue or mtype == frame.CONFIRMED_UP:
                fport, payload, confirmed, fopts = (
                    self.queue.pop(0) if self.queue else (-1, b"", False, b"")
                )
                fctrl = frame.F_ACK if mtype == frame.CONFIRMED_UP else 0
                mt = frame.CONFIRMED_DOWN if confirmed else frame.UNCONFIRMED_DOWN
                n = frame.build_data(
                    self.buf, mt, addr, fctrl, sess[1], fopts, len(fopts), fport, payload,
                    len(payload), sess[0],
                )  # fmt: skip
                sess[1] += 1
                phy_down = bytes(self.buf[frame.B0 : frame.B0 + n])
                f1, d1 = self.rx1(freq_hz, datr)
                self.radios[node_id].deliver(phy_down, f1, d1, t_ms + 1000 * self.rx1_delay_s)

    def _join_accept(self, node_id, dev_nonce, freq_hz, datr, t_ms):
        self.join_nonce += 1
        addr = self.next_addr
        self.next_addr += 1
        plain = bytearray(17)
        plain[0] = frame.JOIN_ACCEPT << 5
        struct.pack_into("<I", plain, 1, self.join_nonce)  # 3 bytes used, NetID overwrites byte 4
        plain[4] = NET_ID & 0xFF
        plain[5] = (NET_ID >> 8) & 0xFF
        plain[6] = NET_ID >> 16
        struct.pack_into("<IBB", plain, 7, addr, 0x00, self.rx1_delay_s)
        struct.pack_into("<I", plain, 13, self.app_cmac.mic(plain, 0, 13))
        # the join server *decrypts* so the device can *encrypt* (L2 §6.2.6)
        dec = aes(self.app_key, 1)
        out = bytearray(plain)
        blk = bytearray(16)
        dec.decrypt(bytes(plain[1:17]), blk)
        out[1:17] = blk
        nwk, app = derive_session_keys(self.app_key, self.join_nonce, NET_ID, dev_nonce)
        self.sessions[addr] = [Keys(nwk, app), 0]
        f1, d1 = self.rx1(freq_hz, datr)
        accept = bytes(out)
        if self.replay_accept is not None:
            accept = self.replay_accept  # an old Join-Accept, replayed by an attacker
        self.last_accept = bytes(out)
        self.radios[node_id].deliver(accept, f1, d1, t_ms + 5000)
