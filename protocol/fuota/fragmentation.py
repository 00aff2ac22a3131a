"""TS005-1.0.0 fragmented data block transport (fPort 201): the commands both ways.

TS005 §4: PackageVersion (§4.1), FragSessionStatus (§4.2), FragSessionSetup (§4.3),
FragSessionDelete (§4.4), DataFragment (§4.5). Byte layouts agree with ChirpStack's
``lorawan/applayer/fragmentation`` test vectors (protocol/vectors/fuota.json).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from protocol.errors import EncodeError
from protocol.fuota._command import (
    Command,
    PackageVersionAns,
    PackageVersionReq,
    decode_commands,
    u8,
    u16,
    u32,
)

__all__ = [
    "FPORT",
    "MAX_N",
    "PACKAGE_IDENTIFIER",
    "DataFragment",
    "FragSessionDeleteAns",
    "FragSessionDeleteReq",
    "FragSessionSetupAns",
    "FragSessionSetupReq",
    "FragSessionStatusAns",
    "FragSessionStatusReq",
    "decode_downlink",
    "decode_uplink",
]

FPORT = 201
PACKAGE_IDENTIFIER = 3
MAX_N = 0x3FFF  # N is 14 bits


def _index(value: int) -> int:
    if not 0 <= value <= 3:
        raise EncodeError("frag_index must be 0..3", field="frag_index", value=value)
    return value


@dataclass(frozen=True, slots=True)
class FragSessionStatusReq(Command):
    """Downlink: FragStatusReqParam (Participants bit 0, FragIndex bits 1..2)."""

    frag_index: int
    participants: bool = False
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([(1 if self.participants else 0) | (_index(self.frag_index) << 1)])

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionStatusReq:
        return cls((body[0] >> 1) & 0x03, bool(body[0] & 1))


@dataclass(frozen=True, slots=True)
class FragSessionStatusAns(Command):
    """Uplink: NbFragReceived (bits 0..13) + FragIndex (14..15), MissingFrag, Status
    (NotEnoughMatrixMemory bit 0)."""

    frag_index: int
    nb_frag_received: int
    missing_frag: int
    not_enough_matrix_memory: bool = False
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = 4

    def body(self) -> bytes:
        if not 0 <= self.nb_frag_received <= MAX_N:
            raise EncodeError("nb_frag_received must be 0..16383")
        word = self.nb_frag_received | (_index(self.frag_index) << 14)
        return (
            u16(word, "nb_frag_received")
            + bytes([u8(self.missing_frag, "missing_frag")])
            + bytes([1 if self.not_enough_matrix_memory else 0])
        )

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionStatusAns:
        word = int.from_bytes(body[:2], "little")
        return cls(word >> 14, word & MAX_N, body[2], bool(body[3] & 1))


@dataclass(frozen=True, slots=True)
class FragSessionSetupReq(Command):
    """Downlink: FragSession (McGroupBitMask 0..3, FragIndex 4..5), NbFrag u16, FragSize,
    Control (BlockAckDelay 0..2, FragmentationMatrix 3..5), Padding, Descriptor u32."""

    frag_index: int
    mc_group_bit_mask: int
    nb_frag: int
    frag_size: int
    padding: int
    block_ack_delay: int = 0
    fragmentation_matrix: int = 0
    descriptor: int = 0
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 10

    def body(self) -> bytes:
        if not 0 <= self.mc_group_bit_mask <= 15:
            raise EncodeError("mc_group_bit_mask must be 0..15")
        if not 0 <= self.block_ack_delay <= 7 or not 0 <= self.fragmentation_matrix <= 7:
            raise EncodeError("block_ack_delay and fragmentation_matrix must be 0..7")
        return (
            bytes([self.mc_group_bit_mask | (_index(self.frag_index) << 4)])
            + u16(self.nb_frag, "nb_frag")
            + bytes([u8(self.frag_size, "frag_size")])
            + bytes([self.block_ack_delay | (self.fragmentation_matrix << 3)])
            + bytes([u8(self.padding, "padding")])
            + u32(self.descriptor, "descriptor")
        )

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionSetupReq:
        return cls(
            frag_index=(body[0] >> 4) & 0x03,
            mc_group_bit_mask=body[0] & 0x0F,
            nb_frag=int.from_bytes(body[1:3], "little"),
            frag_size=body[3],
            padding=body[5],
            block_ack_delay=body[4] & 0x07,
            fragmentation_matrix=(body[4] >> 3) & 0x07,
            descriptor=int.from_bytes(body[6:10], "little"),
        )


@dataclass(frozen=True, slots=True)
class FragSessionSetupAns(Command):
    """Uplink: StatusBitMask (bit 0 encoding unsupported, 1 not enough memory, 2 FragIndex not
    supported, 3 wrong descriptor; FragIndex bits 6..7)."""

    frag_index: int
    encoding_unsupported: bool = False
    not_enough_memory: bool = False
    frag_index_not_supported: bool = False
    wrong_descriptor: bool = False
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 1

    @property
    def ok(self) -> bool:
        return not (
            self.encoding_unsupported
            or self.not_enough_memory
            or self.frag_index_not_supported
            or self.wrong_descriptor
        )

    def body(self) -> bytes:
        return bytes(
            [
                (1 if self.encoding_unsupported else 0)
                | (2 if self.not_enough_memory else 0)
                | (4 if self.frag_index_not_supported else 0)
                | (8 if self.wrong_descriptor else 0)
                | (_index(self.frag_index) << 6)
            ]
        )

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionSetupAns:
        b = body[0]
        return cls(b >> 6, bool(b & 1), bool(b & 2), bool(b & 4), bool(b & 8))


@dataclass(frozen=True, slots=True)
class FragSessionDeleteReq(Command):
    """Downlink: Param (FragIndex bits 0..1)."""

    frag_index: int
    CID: ClassVar[int] = 0x03
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_index(self.frag_index)])

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionDeleteReq:
        return cls(body[0] & 0x03)


@dataclass(frozen=True, slots=True)
class FragSessionDeleteAns(Command):
    """Uplink: Status (FragIndex bits 0..1, SessionDoesNotExist bit 2)."""

    frag_index: int
    session_does_not_exist: bool = False
    CID: ClassVar[int] = 0x03
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_index(self.frag_index) | (4 if self.session_does_not_exist else 0)])

    @classmethod
    def from_body(cls, body: bytes) -> FragSessionDeleteAns:
        return cls(body[0] & 0x03, bool(body[0] & 4))


@dataclass(frozen=True, slots=True)
class DataFragment(Command):
    """Downlink: IndexAndN u16 (N bits 0..13, 1-based; FragIndex bits 14..15), then the fragment
    (runs to the end of the payload)."""

    frag_index: int
    n: int
    payload: bytes
    CID: ClassVar[int] = 0x08
    SIZE: ClassVar[int] = -1

    def body(self) -> bytes:
        if not 1 <= self.n <= MAX_N:
            raise EncodeError("n must be 1..16383", field="n", value=self.n)
        return u16(self.n | (_index(self.frag_index) << 14), "n") + bytes(self.payload)

    @classmethod
    def body_size(cls, data: bytes, at: int) -> int:
        return len(data) - at if len(data) - at >= 2 else 2

    @classmethod
    def from_body(cls, body: bytes) -> DataFragment:
        word = int.from_bytes(body[:2], "little")
        return cls(word >> 14, word & MAX_N, bytes(body[2:]))


_DOWN: dict[int, type[Command]] = {
    0x00: PackageVersionReq,
    0x01: FragSessionStatusReq,
    0x02: FragSessionSetupReq,
    0x03: FragSessionDeleteReq,
    0x08: DataFragment,
}
_UP: dict[int, type[Command]] = {
    0x00: PackageVersionAns,
    0x01: FragSessionStatusAns,
    0x02: FragSessionSetupAns,
    0x03: FragSessionDeleteAns,
}


def decode_downlink(data: bytes) -> list[Command]:
    return decode_commands(data, _DOWN, "TS005", "downlink")


def decode_uplink(data: bytes) -> list[Command]:
    return decode_commands(data, _UP, "TS005", "uplink")
