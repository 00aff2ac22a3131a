"""A street of CPython lamps that follow the LoRaWAN specs, for the group-command bench and tests.

Each lamp is a minimal LoRaWAN 1.0.4 class C end device built only on ``protocol.lorawan``
(not the firmware, not the emulator's or the gateway's code): OTAA join (L2 §6.2), data uplinks
with a 32-bit FCnt, unicast downlinks checked with its own session keys (MIC, FCnt, decryption,
L2 §4.3-§4.4), and multicast downlinks checked with a group's session keys, which it derives
from the McKey itself as TS004-1.0.0 (remote multicast setup) §3.1.2 says (McAppSKey =
aes128_encrypt(McKey, 0x01 | McAddr | pad16), McNwkSKey = aes128_encrypt(McKey, 0x02 | McAddr |
pad16), McAddr little-endian); a multicast frame is accepted only as an unconfirmed data down
with FCtrl zero and a FCnt newer than the last (replays refused). The McKey is handed to the
lamp directly, standing for the McGroupSetupReq the firmware's setup package receives.

A lamp applies ``lamp_override`` (and any other lamp command) by answering ``command_result``
with the command's ``command_id`` (ARCHITECTURE.md invariant 4), with the ACK bit set when the
command came in a confirmed unicast downlink.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocol import codec
from protocol.errors import ProtocolError
from protocol.lorawan.crypto import aes_ecb_encrypt
from protocol.lorawan.data import DataFrame
from protocol.lorawan.join import JoinAccept, JoinRequest
from protocol.lorawan.keys import EUI64, AESKey, DevAddr
from protocol.lorawan.mhdr import MType

__all__ = ["Lamp", "McSession", "mc_session_keys"]


def mc_session_keys(mc_key: bytes, mc_addr: int) -> tuple[bytes, bytes]:
    """(McAppSKey, McNwkSKey) of a group (TS004-1.0.0 §3.1.2)."""
    addr = mc_addr.to_bytes(4, "little")
    return (
        aes_ecb_encrypt(mc_key, b"\x01" + addr + bytes(11)),
        aes_ecb_encrypt(mc_key, b"\x02" + addr + bytes(11)),
    )


@dataclass
class McSession:
    """One multicast group as a receiver holds it."""

    mc_addr: int
    mc_key: bytes = field(repr=False)
    last_f_cnt: int | None = None

    def open(self, phy: bytes) -> tuple[int, int, bytes] | None:
        """(FCnt, FPort, plaintext) if ``phy`` is a new, verifying frame of this group."""
        app_s_key, nwk_s_key = mc_session_keys(self.mc_key, self.mc_addr)
        try:
            frame = DataFrame.from_bytes(phy)
        except ProtocolError:
            return None
        if frame.dev_addr.value != self.mc_addr or frame.mhdr.mtype != MType.UNCONFIRMED_DATA_DOWN:
            return None
        fctrl = frame.fctrl
        if fctrl.ack or fctrl.adr or fctrl.f_pending or frame.fhdr.fopts:
            return None  # multicast frames carry no MAC state (TS004-1.0.0 §3)
        f_cnt = _next_f_cnt(self.last_f_cnt, frame.fcnt16)
        if not frame.mic_ok(nwk_s_key, f_cnt) or not frame.fport:
            return None
        data = frame.decrypt(app_s_key=app_s_key, fcnt=f_cnt)
        self.last_f_cnt = f_cnt
        return f_cnt, frame.fport, data


def _next_f_cnt(last: int | None, f16: int) -> int:
    """The smallest 32-bit FCnt after ``last`` with these 16 low bits (L2 §4.3.1.5)."""
    base = 0 if last is None else last + 1
    f_cnt = (base & ~0xFFFF) | f16
    return f_cnt + 0x10000 if f_cnt < base else f_cnt


@dataclass
class Lamp:
    """One class C lamp (see the module doc)."""

    dev_eui: str
    join_eui: str
    app_key: bytes = field(repr=False)
    dev_nonce: int = 0
    f_cnt_up: int = 0
    f_cnt_down: int | None = None
    dev_addr: int | None = None
    nwk_s_key: bytes = field(default=b"", repr=False)
    app_s_key: bytes = field(default=b"", repr=False)
    groups: list[McSession] = field(default_factory=list)
    applied: list[dict[str, Any]] = field(default_factory=list)  # commands it applied
    pending_ack: bool = False
    outcome: str = "applied"  # what it answers: applied, or rejected (a lamp that refuses)

    def join_request(self) -> bytes:
        self.dev_nonce += 1  # L2 1.0.4 §6.2.5: a counter, never reused
        return JoinRequest.build(
            AESKey(self.app_key),
            EUI64.from_hex(self.join_eui),
            EUI64.from_hex(self.dev_eui),
            self.dev_nonce,
        ).to_bytes()

    def join_accept(self, phy: bytes) -> bool:
        """Take a Join-Accept meant for this lamp (False if it is not one, or not ours)."""
        try:
            accept = JoinAccept.decrypt(phy, AESKey(self.app_key))
        except ProtocolError:
            return False
        keys = accept.session_keys(AESKey(self.app_key), self.dev_nonce)
        self.dev_addr = accept.dev_addr.value
        self.nwk_s_key, self.app_s_key = keys.nwk_s_key.to_bytes(), keys.app_s_key.to_bytes()
        self.f_cnt_up, self.f_cnt_down = 0, None
        return True

    def uplink(self, message: str, fields: dict[str, Any]) -> bytes:
        """An unconfirmed uplink of a catalogue message (ACK set if a confirmed one came)."""
        assert self.dev_addr is not None, "join first"
        f_port, data = codec.encode(message, fields)
        frame = DataFrame.build(
            mtype=MType.UNCONFIRMED_DATA_UP,
            dev_addr=DevAddr(self.dev_addr),
            fcnt=self.f_cnt_up,
            nwk_s_key=self.nwk_s_key,
            app_s_key=self.app_s_key,
            fport=f_port,
            payload=data,
            ack=self.pending_ack,
        )
        self.f_cnt_up += 1
        self.pending_ack = False
        return frame.to_bytes()

    def hear(self, phy: bytes) -> bytes | None:
        """A downlink on the air: the ``command_result`` uplink to send if it carried a command
        for this lamp (unicast to its DevAddr, or multicast to one of its groups)."""
        for group in self.groups:
            opened = group.open(phy)
            if opened is not None:
                return self._apply(opened[1], opened[2])
        if self.dev_addr is None:
            return None
        try:
            frame = DataFrame.from_bytes(phy)
        except ProtocolError:
            return None
        if frame.uplink or frame.dev_addr.value != self.dev_addr:
            return None
        f_cnt = _next_f_cnt(self.f_cnt_down, frame.fcnt16)
        if not frame.mic_ok(self.nwk_s_key, f_cnt):
            return None
        self.f_cnt_down = f_cnt
        if frame.mhdr.mtype == MType.CONFIRMED_DATA_DOWN:
            self.pending_ack = True
        if not frame.fport:
            return None  # MAC only: nothing for the application
        return self._apply(frame.fport, frame.decrypt(app_s_key=self.app_s_key, fcnt=f_cnt))

    def _apply(self, f_port: int, data: bytes) -> bytes | None:
        try:
            decoded = codec.decode(f_port, data, "down")
        except ProtocolError:
            return None
        command_id = decoded.fields.get("command_id")
        if not isinstance(command_id, int):
            return None
        if self.outcome == "applied":
            self.applied.append({"message": decoded.message, **decoded.fields})
        return self.uplink("command_result", {"command_id": command_id, "outcome": self.outcome})
