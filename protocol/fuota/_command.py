"""What every TS003/TS004/TS005 command shares: a CID byte, a body, a table per package and way.

The three packages frame commands the same way (TS003 §3, TS004 §3, TS005 §3): an
application payload on the package's fPort is a sequence of commands, each one CID byte and a
body whose length the CID (and for a few answers, the body's first byte) fixes. A command the
table does not know, or a truncated one, stops decoding with a :class:`DecodeError`: its length
is unknown, so nothing after it can be read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar

from protocol.errors import DecodeError, EncodeError

__all__ = [
    "Command",
    "PackageVersionAns",
    "PackageVersionReq",
    "decode_commands",
    "encode_commands",
    "u8",
    "u16",
    "u24",
    "u32",
]


def u8(value: int, name: str) -> int:
    if not 0 <= value <= 0xFF:
        raise EncodeError(f"{name} must be 0..255", field=name, value=value)
    return value


def u16(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFF:
        raise EncodeError(f"{name} must be 0..65535", field=name, value=value)
    return value.to_bytes(2, "little")


def u24(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFF:
        raise EncodeError(f"{name} must be 0..2^24-1", field=name, value=value)
    return value.to_bytes(3, "little")


def u32(value: int, name: str) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise EncodeError(f"{name} must be 0..2^32-1", field=name, value=value)
    return value.to_bytes(4, "little")


class Command:
    """Base of every command: ``to_bytes()`` is the CID and the body."""

    CID: ClassVar[int]
    SIZE: ClassVar[int]  # body length, -1 when the body says it

    def body(self) -> bytes:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        return bytes([self.CID]) + self.body()

    @classmethod
    def body_size(cls, data: bytes, at: int) -> int:
        """Length of the body starting at ``data[at]`` (only variable-size commands override)."""
        return cls.SIZE

    @classmethod
    def from_body(cls, body: bytes) -> Command:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class PackageVersionReq(Command):
    """PackageVersionReq (CID 0x00, no body): the same in TS003 §4.1, TS004 §4.1, TS005 §4.1."""

    CID: ClassVar[int] = 0x00
    SIZE: ClassVar[int] = 0

    def body(self) -> bytes:
        return b""

    @classmethod
    def from_body(cls, body: bytes) -> PackageVersionReq:
        return cls()


@dataclass(frozen=True, slots=True)
class PackageVersionAns(Command):
    """PackageVersionAns: PackageIdentifier (1 TS003, 2 TS004, 3 TS005) and PackageVersion."""

    package_identifier: int
    package_version: int
    CID: ClassVar[int] = 0x00
    SIZE: ClassVar[int] = 2

    def body(self) -> bytes:
        return bytes(
            [
                u8(self.package_identifier, "package_identifier"),
                u8(self.package_version, "package_version"),
            ]
        )

    @classmethod
    def from_body(cls, body: bytes) -> PackageVersionAns:
        return cls(body[0], body[1])


def encode_commands(commands: Iterable[Command]) -> bytes:
    """The application payload carrying ``commands`` in order."""
    return b"".join(c.to_bytes() for c in commands)


def decode_commands(
    data: bytes, table: Mapping[int, type[Command]], package: str, direction: str
) -> list[Command]:
    """Every command in ``data``; :class:`DecodeError` on an unknown CID or a truncated body."""
    out: list[Command] = []
    at = 0
    data = bytes(data)
    while at < len(data):
        cid = data[at]
        kind = table.get(cid)
        if kind is None:
            raise DecodeError(f"{package}: unknown {direction} CID 0x{cid:02x}", cid=cid, offset=at)
        at += 1
        size = kind.body_size(data, at)
        if size < 0 or at + size > len(data):
            raise DecodeError(
                f"{package}: {kind.__name__} needs {max(size, 1)} bytes, {len(data) - at} left",
                cid=cid,
                offset=at,
            )
        out.append(kind.from_body(data[at : at + size]))
        at += size
    return out
