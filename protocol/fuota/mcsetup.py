"""TS004-1.0.0 remote multicast setup (fPort 200): the commands both ways.

TS004 §4: PackageVersion (§4.1), McGroupStatus (§4.2), McGroupSetup (§4.3), McGroupDelete
(§4.4), McClassCSession (§4.5). Class B sessions are out of scope (the nodes are class A/C).
Byte layouts agree with ChirpStack's ``lorawan/applayer/multicastsetup`` test vectors
(protocol/vectors/fuota.json). McAddr is a DevAddr: little-endian on the air.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from protocol.errors import EncodeError
from protocol.fuota._command import (
    Command,
    PackageVersionAns,
    PackageVersionReq,
    decode_commands,
    u8,
    u24,
    u32,
)

__all__ = [
    "FPORT",
    "MAX_GROUPS",
    "PACKAGE_IDENTIFIER",
    "McClassCSessionAns",
    "McClassCSessionReq",
    "McGroupDeleteAns",
    "McGroupDeleteReq",
    "McGroupSetupAns",
    "McGroupSetupReq",
    "McGroupStatusAns",
    "McGroupStatusReq",
    "decode_downlink",
    "decode_uplink",
]

FPORT = 200
PACKAGE_IDENTIFIER = 2
MAX_GROUPS = 4


def _gid(value: int) -> int:
    if not 0 <= value < MAX_GROUPS:
        raise EncodeError("mc_group_id must be 0..3", field="mc_group_id", value=value)
    return value


@dataclass(frozen=True, slots=True)
class McGroupStatusReq(Command):
    """Downlink: CmdMask (RegGroupsMask bits 0..3)."""

    reg_groups_mask: int
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        if not 0 <= self.reg_groups_mask <= 15:
            raise EncodeError("reg_groups_mask must be 0..15")
        return bytes([self.reg_groups_mask])

    @classmethod
    def from_body(cls, body: bytes) -> McGroupStatusReq:
        return cls(body[0] & 0x0F)


@dataclass(frozen=True, slots=True)
class McGroupStatusAns(Command):
    """Uplink: Status (AnsGroupMask bits 0..3, NbTotalGroups bits 4..6), then (ID, McAddr)."""

    nb_total_groups: int
    groups: tuple[tuple[int, int], ...] = field(default=())  # (McGroupID, McAddr), ascending
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = -1

    def body(self) -> bytes:
        if not 0 <= self.nb_total_groups <= 7:
            raise EncodeError("nb_total_groups must be 0..7")
        mask = 0
        items = b""
        for gid, addr in self.groups:
            mask |= 1 << _gid(gid)
            items += bytes([gid]) + u32(addr, "mc_addr")
        return bytes([mask | (self.nb_total_groups << 4)]) + items

    @classmethod
    def body_size(cls, data: bytes, at: int) -> int:
        if at >= len(data):
            return 1
        return 1 + 5 * bin(data[at] & 0x0F).count("1")

    @classmethod
    def from_body(cls, body: bytes) -> McGroupStatusAns:
        items = tuple(
            (body[i], int.from_bytes(body[i + 1 : i + 5], "little")) for i in range(1, len(body), 5)
        )
        return cls((body[0] >> 4) & 0x07, items)


@dataclass(frozen=True, slots=True)
class McGroupSetupReq(Command):
    """Downlink: McGroupIDHeader, McAddr u32, McKey_encrypted (16), minMcFCount, maxMcFCount."""

    mc_group_id: int
    mc_addr: int
    mc_key_encrypted: bytes = field(repr=False)
    min_mc_fcount: int
    max_mc_fcount: int
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 29

    def body(self) -> bytes:
        if len(self.mc_key_encrypted) != 16:
            raise EncodeError("mc_key_encrypted must be 16 bytes")
        return (
            bytes([_gid(self.mc_group_id)])
            + u32(self.mc_addr, "mc_addr")
            + bytes(self.mc_key_encrypted)
            + u32(self.min_mc_fcount, "min_mc_fcount")
            + u32(self.max_mc_fcount, "max_mc_fcount")
        )

    @classmethod
    def from_body(cls, body: bytes) -> McGroupSetupReq:
        return cls(
            body[0] & 0x03,
            int.from_bytes(body[1:5], "little"),
            bytes(body[5:21]),
            int.from_bytes(body[21:25], "little"),
            int.from_bytes(body[25:29], "little"),
        )


@dataclass(frozen=True, slots=True)
class McGroupSetupAns(Command):
    """Uplink: McGroupID (bits 0..1), IDerror (bit 2)."""

    mc_group_id: int
    id_error: bool = False
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_gid(self.mc_group_id) | (0x04 if self.id_error else 0)])

    @classmethod
    def from_body(cls, body: bytes) -> McGroupSetupAns:
        return cls(body[0] & 0x03, bool(body[0] & 0x04))


@dataclass(frozen=True, slots=True)
class McGroupDeleteReq(Command):
    """Downlink: McGroupIDHeader."""

    mc_group_id: int
    CID: ClassVar[int] = 0x03
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_gid(self.mc_group_id)])

    @classmethod
    def from_body(cls, body: bytes) -> McGroupDeleteReq:
        return cls(body[0] & 0x03)


@dataclass(frozen=True, slots=True)
class McGroupDeleteAns(Command):
    """Uplink: McGroupID (bits 0..1), McGroupUndefined (bit 2)."""

    mc_group_id: int
    mc_group_undefined: bool = False
    CID: ClassVar[int] = 0x03
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_gid(self.mc_group_id) | (0x04 if self.mc_group_undefined else 0)])

    @classmethod
    def from_body(cls, body: bytes) -> McGroupDeleteAns:
        return cls(body[0] & 0x03, bool(body[0] & 0x04))


@dataclass(frozen=True, slots=True)
class McClassCSessionReq(Command):
    """Downlink: McGroupIDHeader, SessionTime u32 (GPS s), SessionTimeOut (2^n s, bits 0..3),
    DLFrequency u24 (x100 Hz), DR."""

    mc_group_id: int
    session_time: int
    session_timeout: int
    dl_frequency_hz: int
    dr: int
    CID: ClassVar[int] = 0x04
    SIZE: ClassVar[int] = 10

    def body(self) -> bytes:
        if not 0 <= self.session_timeout <= 15:
            raise EncodeError("session_timeout must be 0..15 (2^n seconds)")
        if self.dl_frequency_hz % 100:
            raise EncodeError("dl_frequency_hz must be a multiple of 100 Hz")
        return (
            bytes([_gid(self.mc_group_id)])
            + u32(self.session_time, "session_time")
            + bytes([self.session_timeout])
            + u24(self.dl_frequency_hz // 100, "dl_frequency_hz")
            + bytes([u8(self.dr, "dr")])
        )

    @classmethod
    def from_body(cls, body: bytes) -> McClassCSessionReq:
        return cls(
            body[0] & 0x03,
            int.from_bytes(body[1:5], "little"),
            body[5] & 0x0F,
            int.from_bytes(body[6:9], "little") * 100,
            body[9],
        )


@dataclass(frozen=True, slots=True)
class McClassCSessionAns(Command):
    """Uplink: Status (McGroupID, DR error bit 2, frequency error bit 3, McGroupUndefined bit 4),
    then TimeToStart u24 (seconds) only when no error bit is set."""

    mc_group_id: int
    dr_error: bool = False
    freq_error: bool = False
    mc_group_undefined: bool = False
    time_to_start: int | None = None
    CID: ClassVar[int] = 0x04
    SIZE: ClassVar[int] = -1

    @property
    def ok(self) -> bool:
        return not (self.dr_error or self.freq_error or self.mc_group_undefined)

    def body(self) -> bytes:
        status = (
            _gid(self.mc_group_id)
            | (0x04 if self.dr_error else 0)
            | (0x08 if self.freq_error else 0)
            | (0x10 if self.mc_group_undefined else 0)
        )
        if self.ok:
            if self.time_to_start is None:
                raise EncodeError("time_to_start is required when no error bit is set")
            return bytes([status]) + u24(self.time_to_start, "time_to_start")
        if self.time_to_start is not None:
            raise EncodeError("time_to_start is sent only when no error bit is set")
        return bytes([status])

    @classmethod
    def body_size(cls, data: bytes, at: int) -> int:
        if at >= len(data):
            return 1
        return 1 if data[at] & 0x1C else 4

    @classmethod
    def from_body(cls, body: bytes) -> McClassCSessionAns:
        s = body[0]
        tts = int.from_bytes(body[1:4], "little") if len(body) == 4 else None
        return cls(s & 0x03, bool(s & 0x04), bool(s & 0x08), bool(s & 0x10), tts)


_DOWN: dict[int, type[Command]] = {
    0x00: PackageVersionReq,
    0x01: McGroupStatusReq,
    0x02: McGroupSetupReq,
    0x03: McGroupDeleteReq,
    0x04: McClassCSessionReq,
}
_UP: dict[int, type[Command]] = {
    0x00: PackageVersionAns,
    0x01: McGroupStatusAns,
    0x02: McGroupSetupAns,
    0x03: McGroupDeleteAns,
    0x04: McClassCSessionAns,
}


def decode_downlink(data: bytes) -> list[Command]:
    return decode_commands(data, _DOWN, "TS004", "downlink")


def decode_uplink(data: bytes) -> list[Command]:
    return decode_commands(data, _UP, "TS004", "uplink")
