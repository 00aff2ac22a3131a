"""MHDR, the MAC header: message type and major version (LoRaWAN L2 1.0.4 §4.2).

``MHDR = MType (bits 7..5) | RFU (bits 4..2) | Major (bits 1..0)`` (L2 §4.2, Table 2 and 3).
Only Major = 0 (LoRaWAN R1) exists; a frame with another major version SHALL be dropped by a
receiver (L2 §4.2.2), so :meth:`MHDR.from_bytes` refuses it.
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass

import construct as cs

from protocol.errors import EncodeError, FrameError
from protocol.lorawan import _layout

__all__ = ["MHDR", "MType"]


class MType(enum.IntEnum):
    """Message types, L2 §4.2.1 Table 2."""

    JOIN_REQUEST = 0b000
    JOIN_ACCEPT = 0b001
    UNCONFIRMED_DATA_UP = 0b010
    UNCONFIRMED_DATA_DOWN = 0b011
    CONFIRMED_DATA_UP = 0b100
    CONFIRMED_DATA_DOWN = 0b101
    RFU = 0b110
    PROPRIETARY = 0b111

    @property
    def json_name(self) -> str:
        """The name `citypack frame decode --json` prints (``unconfirmed_data_up`` ...)."""
        return self.name.lower()

    @property
    def is_data(self) -> bool:
        return self in _DATA

    @property
    def is_uplink(self) -> bool:
        """True for frames sent by the end-device (Join-Request and data up)."""
        return self in (MType.JOIN_REQUEST, MType.UNCONFIRMED_DATA_UP, MType.CONFIRMED_DATA_UP)

    @property
    def is_confirmed(self) -> bool:
        return self in (MType.CONFIRMED_DATA_UP, MType.CONFIRMED_DATA_DOWN)

    @classmethod
    def from_json_name(cls, name: str) -> MType:
        try:
            return cls[name.upper()]
        except KeyError:
            raise EncodeError(f"unknown message type {name!r}") from None


_DATA = frozenset(
    {
        MType.UNCONFIRMED_DATA_UP,
        MType.UNCONFIRMED_DATA_DOWN,
        MType.CONFIRMED_DATA_UP,
        MType.CONFIRMED_DATA_DOWN,
    }
)

_MHDR = cs.BitStruct(
    "mtype" / cs.BitsInteger(3), "rfu" / cs.BitsInteger(3), "major" / cs.BitsInteger(2)
)


@dataclass(frozen=True, slots=True)
class MHDR:
    """The MAC header. ``rfu`` keeps bits 4..2 so that a frame re-encodes byte for byte."""

    mtype: MType
    major: int = 0
    rfu: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "mtype", MType(self.mtype))
        if self.major != 0:
            raise EncodeError(f"Major {self.major} is RFU: only LoRaWAN R1 (Major 0) exists")
        if not 0 <= self.rfu <= 7:
            raise EncodeError(f"MHDR RFU bits are 3 bits, got {self.rfu}")

    @classmethod
    def from_bytes(cls, data: bytes) -> MHDR:
        if len(data) != 1:
            raise FrameError(f"MHDR is 1 byte, got {len(data)}")
        return _mhdr_from_byte(data[0])

    def to_bytes(self) -> bytes:
        return _mhdr_to_bytes(self)


# One octet has 256 values: parse and build each once (construct is slow per call).
@functools.lru_cache(maxsize=256)
def _mhdr_from_byte(value: int) -> MHDR:
    parsed = _layout.parse(_MHDR, bytes([value]), "MHDR")
    if parsed.major != 0:
        raise FrameError(f"Major version {parsed.major} is not LoRaWAN R1: dropped (L2 §4.2.2)")
    return MHDR(MType(parsed.mtype), 0, parsed.rfu)


@functools.lru_cache(maxsize=256)
def _mhdr_to_bytes(mhdr: MHDR) -> bytes:
    values = {"mtype": int(mhdr.mtype), "rfu": mhdr.rfu, "major": mhdr.major}
    return _layout.build(_MHDR, values, "MHDR")
