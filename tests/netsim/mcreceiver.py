"""A class C multicast receiver applying the spec, independent of the emulator's code.

LoRaWAN Remote Multicast Setup v1.0.0 §3.3.1 (McGroupSetupReq): from the group's McKey,
McAppSKey = aes128_encrypt(McKey, 0x01 | McAddr | pad16) and
McNwkSKey = aes128_encrypt(McKey, 0x02 | McAddr | pad16), McAddr little-endian. A frame is for
the group when its DevAddr is the McAddr; it is an unconfirmed data down with FCtrl zero (no ACK,
ADR, FPending or FOpts), its MIC verifies with McNwkSKey over the 32-bit FCnt, and the FCnt is
newer than the last one accepted (min_fcnt..max_fcnt window of McGroupSetupReq); the FRMPayload
is decrypted with McAppSKey (L2 1.0.4 §4.3.3, §4.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.errors import ProtocolError
from protocol.lorawan.crypto import aes_ecb_encrypt
from protocol.lorawan.data import DataFrame
from protocol.lorawan.mhdr import MType


def mc_session_keys(mc_key: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """(McAppSKey, McNwkSKey) for a group (Remote Multicast Setup v1.0.0 §3.3.1)."""
    addr = mc_addr.to_bytes(4, "little")
    app = aes_ecb_encrypt(mc_key, b"\x01" + addr + bytes(11))
    nwk = aes_ecb_encrypt(mc_key, b"\x02" + addr + bytes(11))
    return app, nwk


@dataclass
class McReceiver:
    mc_addr: int
    mc_key: bytes = field(repr=False)
    last_fcnt: int | None = None
    received: list[tuple[int, int, bytes]] = field(default_factory=list)  # (fcnt, fport, data)

    def hear(self, phy: bytes) -> bytes | None:
        """The decrypted payload if ``phy`` is a valid new frame of this group, else None."""
        app_s_key, nwk_s_key = mc_session_keys(self.mc_key, self.mc_addr)
        try:
            frame = DataFrame.from_bytes(phy)
        except ProtocolError:
            return None
        if frame.dev_addr.value != self.mc_addr or frame.mhdr.mtype != MType.UNCONFIRMED_DATA_DOWN:
            return None
        fctrl = frame.fctrl
        if fctrl.ack or fctrl.adr or fctrl.f_pending or frame.fhdr.fopts:
            return None
        base = 0 if self.last_fcnt is None else self.last_fcnt + 1
        fcnt = (base & ~0xFFFF) | frame.fcnt16
        if fcnt < base:
            fcnt += 0x10000
        if not frame.mic_ok(nwk_s_key, fcnt) or frame.fport is None or frame.fport == 0:
            return None
        data = frame.decrypt(app_s_key=app_s_key, fcnt=fcnt)
        self.last_fcnt = fcnt
        self.received.append((fcnt, frame.fport, data))
        return data
