"""MAC commands of LoRaWAN 1.0.4, both directions (LoRaWAN L2 1.0.4 §5, Table 4).

A MAC command is ``CID (1) | payload`` and travels in FOpts or in an FPort 0 FRMPayload
(L2 §4.3.1.6, §5). The same CID means a different command per direction: the end-device sends
``…Req`` to ask and ``…Ans`` to answer, the network the other way round.

=====  ==========================  ============================  ===========
CID    end-device → network        network → end-device          L2 section
=====  ==========================  ============================  ===========
0x02   LinkCheckReq (0)            LinkCheckAns (2)              §5.1
0x03   LinkADRAns (1)              LinkADRReq (4)                §5.2
0x04   DutyCycleAns (0)            DutyCycleReq (1)              §5.3
0x05   RXParamSetupAns (1)         RXParamSetupReq (4)           §5.4
0x06   DevStatusAns (2)            DevStatusReq (0)              §5.5
0x07   NewChannelAns (1)           NewChannelReq (5)             §5.6
0x08   RXTimingSetupAns (0)        RXTimingSetupReq (1)          §5.7
0x09   TxParamSetupAns (0)         TxParamSetupReq (1)           §5.8
0x0A   DlChannelAns (1)            DlChannelReq (4)              §5.6 (DlChannel)
0x0D   DeviceTimeReq (0)           DeviceTimeAns (5)             §5.9
=====  ==========================  ============================  ===========

(payload lengths in parentheses). Frequencies are 24-bit little-endian in units of 100 Hz and are
held here in Hz. RFU bits must be zero: a command with RFU bits set does not parse.
Class B commands (0x10..0x13) and proprietary CIDs (0x80..0xFF) are not decoded: an unknown CID
stops parsing, because the length of what follows is unknown (L2 §5: "the end-device SHALL
ignore the rest of the MAC commands").
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar, Self

import construct as cs

from protocol.errors import EncodeError, FrameError
from protocol.lorawan import _layout

__all__ = [
    "DevStatusAns",
    "DevStatusReq",
    "DeviceTimeAns",
    "DeviceTimeReq",
    "DlChannelAns",
    "DlChannelReq",
    "DutyCycleAns",
    "DutyCycleReq",
    "LinkADRAns",
    "LinkADRReq",
    "LinkCheckAns",
    "LinkCheckReq",
    "MACCommand",
    "MACCommandError",
    "NewChannelAns",
    "NewChannelReq",
    "RXParamSetupAns",
    "RXParamSetupReq",
    "RXTimingSetupAns",
    "RXTimingSetupReq",
    "TxParamSetupAns",
    "TxParamSetupReq",
    "UnknownMACCommand",
    "UnknownMACCommandError",
    "encode_mac_commands",
    "mac_command_class",
    "parse_mac_commands",
]


class MACCommandError(FrameError):
    """A MAC command that does not parse (truncated, RFU bits set, value out of range)."""


class UnknownMACCommandError(MACCommandError):
    """A CID this stack does not know; ``cid`` and ``offset`` say where parsing stopped."""


_FREQ = cs.ExprAdapter(
    cs.Int24ul,
    decoder=lambda obj, ctx: obj * 100,
    encoder=lambda obj, ctx: obj // 100,
)
_RFU = 0  # RFU fields are built as 0 and must parse as 0


class MACCommand:
    """Base of every MAC command; concrete ones are frozen dataclasses."""

    __slots__ = ()

    CID: ClassVar[int]
    UPLINK: ClassVar[bool]  # True: sent by the end-device
    NAME: ClassVar[str]
    _LAYOUT: ClassVar[Any]
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {}

    @classmethod
    def size(cls) -> int:
        """Payload length in bytes (without the CID)."""
        return int(cls._LAYOUT.sizeof())

    def __post_init__(self) -> None:
        for name, (low, high, words) in self._RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise EncodeError(f"{self.NAME}: {words} must be {low}..{high}, got {value!r}")
        for f in fields(self):  # type: ignore[arg-type]
            if f.name.endswith("_hz"):
                hz = getattr(self, f.name)
                if not isinstance(hz, int) or hz % 100 or not 0 <= hz // 100 < (1 << 24):
                    raise EncodeError(
                        f"{self.NAME}: {f.name} must be a multiple of 100 Hz below 1677.7216 MHz,"
                        f" got {hz!r}"
                    )

    def _values(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    def payload(self) -> bytes:
        return _layout.build(self._LAYOUT, {**self._values(), "rfu": _RFU}, self.NAME)

    def to_bytes(self) -> bytes:
        return bytes([self.CID]) + self.payload()

    @classmethod
    def from_payload(cls, data: bytes) -> Self:
        if len(data) != cls.size():
            raise MACCommandError(f"{cls.NAME} has a {cls.size()}-byte payload, got {len(data)}")
        try:
            parsed = _layout.parse(cls._LAYOUT, data, cls.NAME)
        except FrameError as exc:
            raise MACCommandError(exc.message) from exc
        if parsed.get("rfu", 0):
            raise MACCommandError(f"{cls.NAME}: RFU bits are set")
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        try:
            return cls(**{name: parsed[name] for name in names})
        except EncodeError as exc:
            raise MACCommandError(exc.message) from exc

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        if not data or data[0] != cls.CID:
            raise MACCommandError(f"{cls.NAME} starts with CID {cls.CID:#04x}")
        return cls.from_payload(data[1:])

    def to_json(self) -> dict[str, Any]:
        """``{"command": "LinkADRReq", "cid": 3, ...fields}`` for inspectors and logs."""
        return {"command": self.NAME, "cid": self.CID, **self._values()}


def _flags(*names: str) -> Any:
    """A 1-byte status: RFU in the high bits, then the flags from bit len(names)-1 down to 0."""
    return cs.BitStruct("rfu" / cs.BitsInteger(8 - len(names)), *[name / cs.Flag for name in names])


_EMPTY = cs.Struct()


# -- end-device → network ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkCheckReq(MACCommand):
    """Ask the network for link quality (L2 §5.1)."""

    CID = 0x02
    UPLINK = True
    NAME = "LinkCheckReq"
    _LAYOUT = _EMPTY


@dataclass(frozen=True, slots=True)
class LinkADRAns(MACCommand):
    """Answer to LinkADRReq (L2 §5.2): each ack bit True means that part was accepted."""

    power_ack: bool = True
    data_rate_ack: bool = True
    channel_mask_ack: bool = True

    CID = 0x03
    UPLINK = True
    NAME = "LinkADRAns"
    _LAYOUT = _flags("power_ack", "data_rate_ack", "channel_mask_ack")


@dataclass(frozen=True, slots=True)
class DutyCycleAns(MACCommand):
    """Acknowledges DutyCycleReq (L2 §5.3)."""

    CID = 0x04
    UPLINK = True
    NAME = "DutyCycleAns"
    _LAYOUT = _EMPTY


@dataclass(frozen=True, slots=True)
class RXParamSetupAns(MACCommand):
    """Answer to RXParamSetupReq (L2 §5.4); repeated in every uplink until a downlink."""

    rx1_dr_offset_ack: bool = True
    rx2_data_rate_ack: bool = True
    channel_ack: bool = True

    CID = 0x05
    UPLINK = True
    NAME = "RXParamSetupAns"
    _LAYOUT = _flags("rx1_dr_offset_ack", "rx2_data_rate_ack", "channel_ack")


@dataclass(frozen=True, slots=True)
class DevStatusAns(MACCommand):
    """Battery and demodulation margin (L2 §5.5).

    ``battery``: 0 = external power, 1..254 = level, 255 = cannot measure. ``margin``: SNR of the
    last DevStatusReq in dB, signed 6 bits (-32..31).
    """

    battery: int = 255
    margin: int = 0

    CID = 0x06
    UPLINK = True
    NAME = "DevStatusAns"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "battery": (0, 255, "Battery"),
        "margin": (-32, 31, "Margin (signed 6 bits)"),
    }
    _LAYOUT = cs.Struct(
        "battery" / cs.Int8ul,
        "_m" / cs.BitStruct("rfu" / cs.BitsInteger(2), "margin" / cs.BitsInteger(6, signed=True)),
        "rfu" / cs.Computed(cs.this._m.rfu),
        "margin" / cs.Computed(cs.this._m.margin),
    )

    def payload(self) -> bytes:
        return bytes([self.battery, self.margin & 0x3F])


@dataclass(frozen=True, slots=True)
class NewChannelAns(MACCommand):
    """Answer to NewChannelReq (L2 §5.6)."""

    data_rate_range_ok: bool = True
    channel_frequency_ok: bool = True

    CID = 0x07
    UPLINK = True
    NAME = "NewChannelAns"
    _LAYOUT = _flags("data_rate_range_ok", "channel_frequency_ok")


@dataclass(frozen=True, slots=True)
class RXTimingSetupAns(MACCommand):
    """Acknowledges RXTimingSetupReq (L2 §5.7); repeated until a downlink."""

    CID = 0x08
    UPLINK = True
    NAME = "RXTimingSetupAns"
    _LAYOUT = _EMPTY


@dataclass(frozen=True, slots=True)
class TxParamSetupAns(MACCommand):
    """Acknowledges TxParamSetupReq (L2 §5.8)."""

    CID = 0x09
    UPLINK = True
    NAME = "TxParamSetupAns"
    _LAYOUT = _EMPTY


@dataclass(frozen=True, slots=True)
class DlChannelAns(MACCommand):
    """Answer to DlChannelReq (L2 §5.6); repeated until a downlink."""

    uplink_frequency_exists: bool = True
    channel_frequency_ok: bool = True

    CID = 0x0A
    UPLINK = True
    NAME = "DlChannelAns"
    _LAYOUT = _flags("uplink_frequency_exists", "channel_frequency_ok")


@dataclass(frozen=True, slots=True)
class DeviceTimeReq(MACCommand):
    """Ask the network for the time (L2 §5.9)."""

    CID = 0x0D
    UPLINK = True
    NAME = "DeviceTimeReq"
    _LAYOUT = _EMPTY


# -- network → end-device ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkCheckAns(MACCommand):
    """Link margin in dB above the demodulation floor (0..254) and gateway count (L2 §5.1)."""

    margin: int = 0
    gw_cnt: int = 1

    CID = 0x02
    UPLINK = False
    NAME = "LinkCheckAns"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "margin": (0, 254, "Margin (255 is reserved)"),
        "gw_cnt": (0, 255, "GwCnt"),
    }
    _LAYOUT = cs.Struct("margin" / cs.Int8ul, "gw_cnt" / cs.Int8ul)


@dataclass(frozen=True, slots=True)
class LinkADRReq(MACCommand):
    """Data rate, TX power, channel mask and NbTrans (L2 §5.2).

    ``ch_mask`` bit n enables channel ``16*ch_mask_cntl + n`` (region dependent, RP §2.x.5);
    DataRate 0xF / TXPower 0xF mean "keep the current value" (1.0.4).
    """

    data_rate: int = 0
    tx_power: int = 0
    ch_mask: int = 0
    ch_mask_cntl: int = 0
    nb_trans: int = 0

    CID = 0x03
    UPLINK = False
    NAME = "LinkADRReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "data_rate": (0, 15, "DataRate (4 bits)"),
        "tx_power": (0, 15, "TXPower (4 bits)"),
        "ch_mask": (0, 0xFFFF, "ChMask (16 bits)"),
        "ch_mask_cntl": (0, 7, "ChMaskCntl (3 bits)"),
        "nb_trans": (0, 15, "NbTrans (4 bits)"),
    }
    _LAYOUT = cs.Struct(
        "_dp" / cs.BitStruct("data_rate" / cs.BitsInteger(4), "tx_power" / cs.BitsInteger(4)),
        "ch_mask" / cs.Int16ul,
        "_r"
        / cs.BitStruct(
            "rfu" / cs.BitsInteger(1),
            "ch_mask_cntl" / cs.BitsInteger(3),
            "nb_trans" / cs.BitsInteger(4),
        ),
        "data_rate" / cs.Computed(cs.this._dp.data_rate),
        "tx_power" / cs.Computed(cs.this._dp.tx_power),
        "ch_mask_cntl" / cs.Computed(cs.this._r.ch_mask_cntl),
        "nb_trans" / cs.Computed(cs.this._r.nb_trans),
        "rfu" / cs.Computed(cs.this._r.rfu),
    )

    def payload(self) -> bytes:
        return bytes(
            [
                self.data_rate << 4 | self.tx_power,
                self.ch_mask & 0xFF,
                self.ch_mask >> 8,
                self.ch_mask_cntl << 4 | self.nb_trans,
            ]
        )


@dataclass(frozen=True, slots=True)
class DutyCycleReq(MACCommand):
    """Aggregated duty cycle limit 1 / 2**max_duty_cycle (0 = no limit), L2 §5.3."""

    max_duty_cycle: int = 0

    CID = 0x04
    UPLINK = False
    NAME = "DutyCycleReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "max_duty_cycle": (0, 15, "MaxDutyCycle (4 bits)")
    }
    _LAYOUT = cs.BitStruct("rfu" / cs.BitsInteger(4), "max_duty_cycle" / cs.BitsInteger(4))


@dataclass(frozen=True, slots=True)
class RXParamSetupReq(MACCommand):
    """RX1 DR offset, RX2 data rate and RX2 frequency (L2 §5.4)."""

    rx1_dr_offset: int = 0
    rx2_data_rate: int = 0
    frequency_hz: int = 0

    CID = 0x05
    UPLINK = False
    NAME = "RXParamSetupReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "rx1_dr_offset": (0, 7, "RX1DROffset (3 bits)"),
        "rx2_data_rate": (0, 15, "RX2DataRate (4 bits)"),
    }
    _LAYOUT = cs.Struct(
        "_dl"
        / cs.BitStruct(
            "rfu" / cs.BitsInteger(1),
            "rx1_dr_offset" / cs.BitsInteger(3),
            "rx2_data_rate" / cs.BitsInteger(4),
        ),
        "frequency_hz" / _FREQ,
        "rx1_dr_offset" / cs.Computed(cs.this._dl.rx1_dr_offset),
        "rx2_data_rate" / cs.Computed(cs.this._dl.rx2_data_rate),
        "rfu" / cs.Computed(cs.this._dl.rfu),
    )

    def payload(self) -> bytes:
        return bytes([self.rx1_dr_offset << 4 | self.rx2_data_rate]) + (
            self.frequency_hz // 100
        ).to_bytes(3, "little")


@dataclass(frozen=True, slots=True)
class DevStatusReq(MACCommand):
    """Ask for battery level and margin (L2 §5.5)."""

    CID = 0x06
    UPLINK = False
    NAME = "DevStatusReq"
    _LAYOUT = _EMPTY


@dataclass(frozen=True, slots=True)
class NewChannelReq(MACCommand):
    """Create, modify (frequency ≠ 0) or disable (frequency 0) a channel (L2 §5.6)."""

    ch_index: int = 0
    frequency_hz: int = 0
    max_dr: int = 0
    min_dr: int = 0

    CID = 0x07
    UPLINK = False
    NAME = "NewChannelReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "ch_index": (0, 255, "ChIndex"),
        "max_dr": (0, 15, "MaxDR (4 bits)"),
        "min_dr": (0, 15, "MinDR (4 bits)"),
    }
    _LAYOUT = cs.Struct(
        "ch_index" / cs.Int8ul,
        "frequency_hz" / _FREQ,
        "_dr" / cs.BitStruct("max_dr" / cs.BitsInteger(4), "min_dr" / cs.BitsInteger(4)),
        "max_dr" / cs.Computed(cs.this._dr.max_dr),
        "min_dr" / cs.Computed(cs.this._dr.min_dr),
    )

    def payload(self) -> bytes:
        return (
            bytes([self.ch_index])
            + (self.frequency_hz // 100).to_bytes(3, "little")
            + bytes([self.max_dr << 4 | self.min_dr])
        )


@dataclass(frozen=True, slots=True)
class RXTimingSetupReq(MACCommand):
    """RX1 delay in seconds, 0 meaning 1 s (L2 §5.7)."""

    delay: int = 1

    CID = 0x08
    UPLINK = False
    NAME = "RXTimingSetupReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {"delay": (0, 15, "Del (4 bits)")}
    _LAYOUT = cs.BitStruct("rfu" / cs.BitsInteger(4), "delay" / cs.BitsInteger(4))


@dataclass(frozen=True, slots=True)
class TxParamSetupReq(MACCommand):
    """Dwell time limits and MaxEIRP index (L2 §5.9; regions with dwell time, e.g. AS923)."""

    downlink_dwell_time: bool = False
    uplink_dwell_time: bool = False
    max_eirp: int = 0

    CID = 0x09
    UPLINK = False
    NAME = "TxParamSetupReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "max_eirp": (0, 15, "MaxEIRP index (4 bits)")
    }
    _LAYOUT = cs.BitStruct(
        "rfu" / cs.BitsInteger(2),
        "downlink_dwell_time" / cs.Flag,
        "uplink_dwell_time" / cs.Flag,
        "max_eirp" / cs.BitsInteger(4),
    )


@dataclass(frozen=True, slots=True)
class DlChannelReq(MACCommand):
    """Move the RX1 frequency of a channel (L2 §5.6, DlChannelReq)."""

    ch_index: int = 0
    frequency_hz: int = 0

    CID = 0x0A
    UPLINK = False
    NAME = "DlChannelReq"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {"ch_index": (0, 255, "ChIndex")}
    _LAYOUT = cs.Struct("ch_index" / cs.Int8ul, "frequency_hz" / _FREQ)


@dataclass(frozen=True, slots=True)
class DeviceTimeAns(MACCommand):
    """GPS time at the end of the uplink: seconds since the GPS epoch and 1/256 s (L2 §5.9)."""

    gps_seconds: int = 0
    fraction: int = 0

    CID = 0x0D
    UPLINK = False
    NAME = "DeviceTimeAns"
    _RANGES: ClassVar[dict[str, tuple[int, int, str]]] = {
        "gps_seconds": (0, 0xFFFFFFFF, "seconds since the GPS epoch (32 bits)"),
        "fraction": (0, 255, "fractional second in 1/256 s"),
    }
    _LAYOUT = cs.Struct("gps_seconds" / cs.Int32ul, "fraction" / cs.Int8ul)


@dataclass(frozen=True, slots=True)
class UnknownMACCommand:
    """What :func:`parse_mac_commands` reports with ``strict=False`` for an unknown CID: the CID
    and every byte from it to the end (their length is unknown, so parsing stops)."""

    cid: int
    data: bytes
    uplink: bool

    NAME = "unknown"

    def to_bytes(self) -> bytes:
        return self.data

    def to_json(self) -> dict[str, Any]:
        return {"command": "unknown", "cid": self.cid, "rest": self.data.hex()}


_ALL: tuple[type[MACCommand], ...] = (
    LinkCheckReq,
    LinkADRAns,
    DutyCycleAns,
    RXParamSetupAns,
    DevStatusAns,
    NewChannelAns,
    RXTimingSetupAns,
    TxParamSetupAns,
    DlChannelAns,
    DeviceTimeReq,
    LinkCheckAns,
    LinkADRReq,
    DutyCycleReq,
    RXParamSetupReq,
    DevStatusReq,
    NewChannelReq,
    RXTimingSetupReq,
    TxParamSetupReq,
    DlChannelReq,
    DeviceTimeAns,
)
_BY_CID: dict[tuple[int, bool], type[MACCommand]] = {(c.CID, c.UPLINK): c for c in _ALL}
ALL_COMMANDS = _ALL


def mac_command_class(cid: int, *, uplink: bool) -> type[MACCommand] | None:
    """The command class for ``cid`` sent in that direction, or None if unknown."""
    return _BY_CID.get((cid, uplink))


def parse_mac_commands(
    data: bytes, *, uplink: bool, strict: bool = True
) -> list[MACCommand | UnknownMACCommand]:
    """Parse FOpts or a decrypted FPort 0 payload into commands.

    ``uplink`` is the direction of the frame that carried them. An unknown CID raises
    :class:`UnknownMACCommandError` (``strict``) or ends the list with an
    :class:`UnknownMACCommand` holding the rest. A truncated command raises
    :class:`MACCommandError`.
    """
    data = bytes(data)
    out: list[MACCommand | UnknownMACCommand] = []
    i = 0
    while i < len(data):
        cid = data[i]
        cls = _BY_CID.get((cid, uplink))
        if cls is None:
            if strict:
                raise UnknownMACCommandError(
                    f"unknown {'uplink' if uplink else 'downlink'} MAC command CID {cid:#04x}"
                    f" at byte {i}",
                    cid=cid,
                    offset=i,
                )
            out.append(UnknownMACCommand(cid, data[i:], uplink))
            break
        end = i + 1 + cls.size()
        if end > len(data):
            raise MACCommandError(
                f"{cls.NAME} at byte {i} needs {cls.size()} more bytes, {len(data) - i - 1} left",
                cid=cid,
                offset=i,
            )
        out.append(cls.from_payload(data[i + 1 : end]))
        i = end
    return out


def encode_mac_commands(commands: list[MACCommand], *, uplink: bool) -> bytes:
    """Concatenate commands for FOpts (at most 15 bytes) or an FPort 0 payload."""
    for command in commands:
        if uplink != command.UPLINK:
            way = "uplink" if uplink else "downlink"
            raise EncodeError(f"{command.NAME} is not sent in the {way} direction")
    return b"".join(command.to_bytes() for command in commands)
