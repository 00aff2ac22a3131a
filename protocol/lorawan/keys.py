"""Identifiers and keys of LoRaWAN 1.0.x, and 1.0.x session-key derivation.

Sources (L2 = LoRaWAN L2 1.0.4, TS001-1.0.4): DevEUI and JoinEUI are IEEE EUI-64 (L2 §6.1.1.1,
§6.1.1.2); DevAddr is 32 bits (L2 §6.1.1.6); NetID is 24 bits (L2 §6.2.6, TS002 §6);
AppKey, NwkSKey and AppSKey are AES-128 keys (L2 §6.1.1.3, §6.1.2.2, §6.1.2.3); session keys
are derived as in L2 §6.2.6.

Humans and network-server consoles write EUIs, DevAddr and NetID most significant byte first;
on the air they travel little-endian. These value types hold the number, print it MSB-first and
convert to wire order only in ``to_bytes()``. AES keys are used exactly as written (never
reversed) and never print their value: ``str()`` and ``repr()`` of an :class:`AESKey` are masked.

Errors: text that is not the right hex raises :class:`protocol.errors.DecodeError`; a number out
of range raises :class:`protocol.errors.EncodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Self

from protocol.errors import DecodeError, EncodeError
from protocol.lorawan import crypto

__all__ = ["EUI64", "AESKey", "DevAddr", "NetID", "SessionKeys", "derive_session_keys", "parse_hex"]


def parse_hex(text: str, size: int, what: str) -> bytes:
    """Parse ``size`` bytes of hex (spaces, ``:`` and ``-`` separators and ``0x`` allowed)."""
    if not isinstance(text, str):
        raise DecodeError(f"{what} must be hex text")
    cleaned = text.strip()
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    for sep in (" ", ":", "-", "_"):
        cleaned = cleaned.replace(sep, "")
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError as exc:
        raise DecodeError(f"{what} is not valid hex: {text[:40]!r}") from exc
    if len(raw) != size:
        raise DecodeError(f"{what} must be {size} bytes ({2 * size} hex digits), got {len(raw)}")
    return raw


@dataclass(frozen=True, slots=True)
class _WireInt:
    """An unsigned identifier that is little-endian on the air and MSB-first for humans."""

    value: int
    SIZE: ClassVar[int] = 0
    WHAT: ClassVar[str] = ""

    def __post_init__(self) -> None:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise EncodeError(f"{self.WHAT} must be an integer")
        if not 0 <= self.value < (1 << (8 * self.SIZE)):
            raise EncodeError(f"{self.WHAT} is a {8 * self.SIZE}-bit value, got {self.value}")

    @classmethod
    def from_hex(cls, text: str) -> Self:
        """Parse the MSB-first hex a console shows (``70B3D57ED0000001``)."""
        return cls(int.from_bytes(parse_hex(text, cls.SIZE, cls.WHAT), "big"))

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """From wire order (little-endian)."""
        if len(data) != cls.SIZE:
            raise DecodeError(f"{cls.WHAT} is {cls.SIZE} bytes on the air, got {len(data)}")
        return cls(int.from_bytes(data, "little"))

    def to_bytes(self) -> bytes:
        """Wire order (little-endian)."""
        return self.value.to_bytes(self.SIZE, "little")

    def hex(self) -> str:
        """Lower-case hex, most significant byte first (as consoles show it)."""
        return self.value.to_bytes(self.SIZE, "big").hex()

    def __str__(self) -> str:
        return self.hex()


@dataclass(frozen=True, slots=True)
class EUI64(_WireInt):
    """A DevEUI or JoinEUI (AppEUI in 1.0.2), L2 §6.1.1.1-2."""

    SIZE: ClassVar[int] = 8
    WHAT: ClassVar[str] = "EUI-64"


@dataclass(frozen=True, slots=True)
class DevAddr(_WireInt):
    """The 32-bit device address, L2 §6.1.1.6 (NwkID in the top bits, NwkAddr below)."""

    SIZE: ClassVar[int] = 4
    WHAT: ClassVar[str] = "DevAddr"


@dataclass(frozen=True, slots=True)
class NetID(_WireInt):
    """The 24-bit network identifier sent in the Join-Accept, L2 §6.2.6."""

    SIZE: ClassVar[int] = 3
    WHAT: ClassVar[str] = "NetID"


@dataclass(frozen=True, slots=True, repr=False)
class AESKey:
    """An AES-128 key (AppKey, NwkSKey, AppSKey), used as written; printing it shows no bytes."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes | bytearray) or len(self.value) != 16:
            raise EncodeError("an AES-128 key is 16 bytes")
        object.__setattr__(self, "value", bytes(self.value))

    @classmethod
    def from_hex(cls, text: str, what: str = "key") -> AESKey:
        """Parse 32 hex digits; the error message never repeats the text (it may be a key)."""
        try:
            return cls(parse_hex(text, 16, what))
        except DecodeError:
            raise DecodeError(f"{what} must be 32 hex digits (16 bytes)") from None

    def to_bytes(self) -> bytes:
        return self.value

    def hex(self) -> str:
        """The key as hex; call it only to store the key, never to log it."""
        return self.value.hex()

    def __repr__(self) -> str:
        return "AESKey(<hidden>)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class SessionKeys:
    """The 1.0.x session keys: NwkSKey (MIC, FPort 0) and AppSKey (FPort 1..255)."""

    nwk_s_key: AESKey
    app_s_key: AESKey

    def __repr__(self) -> str:
        return "SessionKeys(<hidden>)"


def derive_session_keys(
    app_key: AESKey, join_nonce: int, net_id: NetID, dev_nonce: int
) -> SessionKeys:
    """Derive NwkSKey and AppSKey after a join (L2 §6.2.6, LoRaWAN 1.0.x).

    ``NwkSKey = aes128_encrypt(AppKey, 0x01 | JoinNonce | NetID | DevNonce | pad16)``,
    ``AppSKey`` the same with 0x02; every field little-endian as on the air.
    """
    key = app_key.to_bytes()
    return SessionKeys(
        nwk_s_key=AESKey(crypto.derive_session_key(key, 0x01, join_nonce, net_id.value, dev_nonce)),
        app_s_key=AESKey(crypto.derive_session_key(key, 0x02, join_nonce, net_id.value, dev_nonce)),
    )
