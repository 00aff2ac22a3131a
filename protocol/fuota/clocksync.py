"""TS003-1.0.0 application-layer clock synchronisation (fPort 202): the commands both ways.

TS003 §4: PackageVersion (§4.1), AppTime (§4.2), DeviceAppTimePeriodicity (§4.3),
ForceDeviceResync (§4.4). Byte layouts agree with ChirpStack's ``lorawan/applayer/clocksync``
test vectors (protocol/vectors/fuota.json). Times are GPS seconds modulo 2^32.
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
    u32,
)

__all__ = [
    "FPORT",
    "PACKAGE_IDENTIFIER",
    "AppTimeAns",
    "AppTimeReq",
    "DeviceAppTimePeriodicityAns",
    "DeviceAppTimePeriodicityReq",
    "ForceDeviceResyncReq",
    "decode_downlink",
    "decode_uplink",
]

FPORT = 202
PACKAGE_IDENTIFIER = 1


def _nibble(value: int, name: str) -> int:
    if not 0 <= value <= 15:
        raise EncodeError(f"{name} must be 0..15", field=name, value=value)
    return value


@dataclass(frozen=True, slots=True)
class AppTimeReq(Command):
    """Uplink: DeviceTime u32, Param (TokenReq bits 0..3, AnsRequired bit 4)."""

    device_time: int
    token_req: int
    ans_required: bool = False
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = 5

    def body(self) -> bytes:
        param = _nibble(self.token_req, "token_req") | (0x10 if self.ans_required else 0)
        return u32(self.device_time, "device_time") + bytes([param])

    @classmethod
    def from_body(cls, body: bytes) -> AppTimeReq:
        return cls(int.from_bytes(body[:4], "little"), body[4] & 0x0F, bool(body[4] & 0x10))


@dataclass(frozen=True, slots=True)
class AppTimeAns(Command):
    """Downlink: TimeCorrection i32 (seconds to add), Param (TokenAns bits 0..3)."""

    time_correction: int
    token_ans: int
    CID: ClassVar[int] = 0x01
    SIZE: ClassVar[int] = 5

    def body(self) -> bytes:
        if not -(2**31) <= self.time_correction < 2**31:
            raise EncodeError("time_correction must fit 32 signed bits")
        return self.time_correction.to_bytes(4, "little", signed=True) + bytes(
            [_nibble(self.token_ans, "token_ans")]
        )

    @classmethod
    def from_body(cls, body: bytes) -> AppTimeAns:
        return cls(int.from_bytes(body[:4], "little", signed=True), body[4] & 0x0F)


@dataclass(frozen=True, slots=True)
class DeviceAppTimePeriodicityReq(Command):
    """Downlink: Periodicity (bits 0..3): AppTimeReq every 128 x 2^Periodicity seconds."""

    periodicity: int
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        return bytes([_nibble(self.periodicity, "periodicity")])

    @classmethod
    def from_body(cls, body: bytes) -> DeviceAppTimePeriodicityReq:
        return cls(body[0] & 0x0F)


@dataclass(frozen=True, slots=True)
class DeviceAppTimePeriodicityAns(Command):
    """Uplink: Status (NotSupported bit 0), Time u32 (device GPS seconds)."""

    not_supported: bool
    time: int
    CID: ClassVar[int] = 0x02
    SIZE: ClassVar[int] = 5

    def body(self) -> bytes:
        return bytes([1 if self.not_supported else 0]) + u32(self.time, "time")

    @classmethod
    def from_body(cls, body: bytes) -> DeviceAppTimePeriodicityAns:
        return cls(bool(body[0] & 1), int.from_bytes(body[1:5], "little"))


@dataclass(frozen=True, slots=True)
class ForceDeviceResyncReq(Command):
    """Downlink: ForceConf (NbTransmissions bits 0..2)."""

    nb_transmissions: int
    CID: ClassVar[int] = 0x03
    SIZE: ClassVar[int] = 1

    def body(self) -> bytes:
        if not 0 <= self.nb_transmissions <= 7:
            raise EncodeError("nb_transmissions must be 0..7")
        return bytes([u8(self.nb_transmissions, "nb_transmissions")])

    @classmethod
    def from_body(cls, body: bytes) -> ForceDeviceResyncReq:
        return cls(body[0] & 0x07)


_DOWN: dict[int, type[Command]] = {
    0x00: PackageVersionReq,
    0x01: AppTimeAns,
    0x02: DeviceAppTimePeriodicityReq,
    0x03: ForceDeviceResyncReq,
}
_UP: dict[int, type[Command]] = {
    0x00: PackageVersionAns,
    0x01: AppTimeReq,
    0x02: DeviceAppTimePeriodicityAns,
}


def decode_downlink(data: bytes) -> list[Command]:
    """Commands the network sent (what the node parses)."""
    return decode_commands(data, _DOWN, "TS003", "downlink")


def decode_uplink(data: bytes) -> list[Command]:
    """Commands a node sent (what the server parses)."""
    return decode_commands(data, _UP, "TS003", "uplink")
