"""FHDR, the frame header of data frames, and its FCtrl octet (LoRaWAN L2 1.0.4 §4.3.1).

``FHDR = DevAddr (4, LE) | FCtrl (1) | FCnt (2, LE) | FOpts (0..15)`` (L2 §4.3.1, Figure 10).
FCtrl differs by direction (L2 §4.3.1, Figures 11 and 12):

- uplink:   ``ADR (7) | ADRACKReq (6) | ACK (5) | ClassB (4) | FOptsLen (3..0)``
- downlink: ``ADR (7) | RFU (6)       | ACK (5) | FPending (4) | FOptsLen (3..0)``

Only the 16 least significant bits of the frame counter travel in FCnt (L2 §4.3.1.5); the full
32-bit value is reconstructed by :mod:`protocol.lorawan.fcnt`. FOpts carry MAC commands and are
not encrypted in LoRaWAN 1.0.x (L2 §4.3.1.6).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import construct as cs

from protocol.errors import EncodeError, FrameError
from protocol.lorawan import _layout
from protocol.lorawan.keys import DevAddr

__all__ = ["FHDR", "FCtrl"]

_FCTRL = cs.BitStruct(
    "adr" / cs.Flag,
    "bit6" / cs.Flag,  # ADRACKReq up, RFU down
    "ack" / cs.Flag,
    "bit4" / cs.Flag,  # ClassB up, FPending down
    "fopts_len" / cs.BitsInteger(4),
)
_FHDR_FIXED = cs.Struct("dev_addr" / cs.Int32ul, "fctrl" / cs.Int8ul, "fcnt" / cs.Int16ul)
_FHDR_FIXED_FAST = _FHDR_FIXED.compile()  # same layout, compiled to Python by construct


@dataclass(frozen=True, slots=True)
class FCtrl:
    """The frame control octet. ``uplink`` selects which meaning bits 6 and 4 have.

    Uplink: ``adr_ack_req`` (bit 6) and ``class_b`` (bit 4); downlink: ``f_pending`` (bit 4) and
    ``rfu`` (bit 6). Flags that do not exist in the frame's direction must stay False.
    """

    uplink: bool
    adr: bool = False
    adr_ack_req: bool = False
    ack: bool = False
    class_b: bool = False
    f_pending: bool = False
    rfu: bool = False
    fopts_len: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.fopts_len <= 15:
            raise EncodeError(f"FOptsLen is 4 bits (0..15), got {self.fopts_len}")
        if self.uplink and (self.f_pending or self.rfu):
            raise EncodeError("FPending and the RFU bit exist only in downlink FCtrl")
        if not self.uplink and (self.adr_ack_req or self.class_b):
            raise EncodeError("ADRACKReq and ClassB exist only in uplink FCtrl")

    @classmethod
    def from_bytes(cls, data: bytes, *, uplink: bool) -> FCtrl:
        if len(data) != 1:
            raise FrameError(f"FCtrl is 1 byte, got {len(data)}")
        return _fctrl_from_byte(data[0], uplink)

    def to_bytes(self) -> bytes:
        return _fctrl_to_bytes(self)


# One octet, two directions: parse and build each value once (construct is slow per call).
@functools.lru_cache(maxsize=512)
def _fctrl_from_byte(value: int, uplink: bool) -> FCtrl:
    p = _layout.parse(_FCTRL, bytes([value]), "FCtrl")
    if uplink:
        return FCtrl(True, p.adr, p.bit6, p.ack, p.bit4, False, False, p.fopts_len)
    return FCtrl(False, p.adr, False, p.ack, False, p.bit4, p.bit6, p.fopts_len)


@functools.lru_cache(maxsize=512)
def _fctrl_to_bytes(fctrl: FCtrl) -> bytes:
    values = {
        "adr": fctrl.adr,
        "bit6": fctrl.adr_ack_req if fctrl.uplink else fctrl.rfu,
        "ack": fctrl.ack,
        "bit4": fctrl.class_b if fctrl.uplink else fctrl.f_pending,
        "fopts_len": fctrl.fopts_len,
    }
    return _layout.build(_FCTRL, values, "FCtrl")


@dataclass(frozen=True, slots=True)
class FHDR:
    """The frame header; ``fcnt16`` is the on-air 16-bit counter, ``fopts`` raw MAC commands."""

    dev_addr: DevAddr
    fctrl: FCtrl
    fcnt16: int
    fopts: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.fcnt16 <= 0xFFFF:
            raise EncodeError(f"FCnt on the air is 16 bits, got {self.fcnt16}; pass fcnt & 0xFFFF")
        if len(self.fopts) > 15:
            raise EncodeError(f"FOpts is at most 15 bytes (L2 §4.3.1.6), got {len(self.fopts)}")
        if len(self.fopts) != self.fctrl.fopts_len:
            raise EncodeError(
                f"FOptsLen {self.fctrl.fopts_len} does not match {len(self.fopts)} FOpts bytes"
            )
        object.__setattr__(self, "fopts", bytes(self.fopts))

    @property
    def size(self) -> int:
        return 7 + len(self.fopts)

    @classmethod
    def parse(cls, data: bytes, *, uplink: bool) -> tuple[FHDR, int]:
        """Parse the FHDR at the start of ``data``; returns it and the bytes it used."""
        if len(data) < 7:
            raise FrameError(f"FHDR needs at least 7 bytes, got {len(data)}")
        fixed = _layout.parse(_FHDR_FIXED_FAST, bytes(data[:7]), "FHDR")
        fctrl = FCtrl.from_bytes(bytes([fixed.fctrl]), uplink=uplink)
        end = 7 + fctrl.fopts_len
        if len(data) < end:
            raise FrameError(
                f"FOptsLen says {fctrl.fopts_len} FOpts bytes but only {len(data) - 7} follow"
            )
        return cls(DevAddr(fixed.dev_addr), fctrl, fixed.fcnt, bytes(data[7:end])), end

    @classmethod
    def from_bytes(cls, data: bytes, *, uplink: bool) -> FHDR:
        fhdr, used = cls.parse(data, uplink=uplink)
        if used != len(data):
            raise FrameError(f"{len(data) - used} bytes after the FHDR")
        return fhdr

    def to_bytes(self) -> bytes:
        fixed = _layout.build(
            _FHDR_FIXED_FAST,
            {
                "dev_addr": self.dev_addr.value,
                "fctrl": self.fctrl.to_bytes()[0],
                "fcnt": self.fcnt16,
            },
        )
        return bytes(fixed) + self.fopts
