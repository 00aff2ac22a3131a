"""Join-Request and Join-Accept with CFList (LoRaWAN L2 1.0.4 §6.2.5, §6.2.6; RP002-1.0.4).

- Join-Request (L2 §6.2.5): ``MHDR | JoinEUI (8) | DevEUI (8) | DevNonce (2) | MIC (4)``, all
  little-endian, not encrypted, ``MIC = aes128_cmac(AppKey, MHDR | JoinEUI | DevEUI | DevNonce)``.
  In 1.0.4 DevNonce is a counter from 0 that the device never reuses for a JoinEUI.
- Join-Accept (L2 §6.2.6): ``MHDR | JoinNonce (3) | NetID (3) | DevAddr (4) | DLSettings (1) |
  RxDelay (1) | [CFList (16)] | MIC (4)``; the MIC covers the plaintext; everything after MHDR
  (MIC included) is encrypted with ``aes128_decrypt(AppKey, …)`` so that the device reads it with
  AES encrypt. DLSettings: bit 7 RFU (OptNeg in 1.1), RX1DROffset bits 6..4, RX2DataRate bits
  3..0. RxDelay: bits 3..0 Del (0 means 1 s), 7..4 RFU (L2 §5.7).
- CFList (RP002-1.0.4 §2.2.5 / §2.5.5 / L2 §6.2.6): 16 bytes, the last is CFListType. Type 0:
  five 24-bit frequencies in 100 Hz (channels 3..7, 0 = no channel); type 1: five 16-bit ChMask
  blocks (ChMask0..4, channels 0..79) and 5 RFU bytes.

:class:`JoinAccept` is the **plaintext** Join-Accept; :class:`EncryptedJoinAccept` is what the
air carries until someone with the AppKey decrypts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import construct as cs

from protocol.errors import EncodeError, FrameError, MICError
from protocol.lorawan import _layout, crypto
from protocol.lorawan.data import KeyLike, _key
from protocol.lorawan.keys import EUI64, DevAddr, NetID, SessionKeys, derive_session_keys
from protocol.lorawan.keys import AESKey as _AESKey
from protocol.lorawan.mhdr import MHDR, MType

__all__ = [
    "CFList",
    "CFListChannelMask",
    "CFListFrequencies",
    "DLSettings",
    "EncryptedJoinAccept",
    "JoinAccept",
    "JoinRequest",
]

JOIN_REQUEST_SIZE = 23
JOIN_ACCEPT_SIZES = (17, 33)

_JOIN_REQUEST = cs.Struct(
    "mhdr" / cs.Int8ul,
    "join_eui" / cs.Int64ul,
    "dev_eui" / cs.Int64ul,
    "dev_nonce" / cs.Int16ul,
    "mic" / cs.Bytes(4),
)
_JOIN_ACCEPT = cs.Struct(
    "mhdr" / cs.Int8ul,
    "join_nonce" / cs.Int24ul,
    "net_id" / cs.Int24ul,
    "dev_addr" / cs.Int32ul,
    "dl_settings" / cs.Int8ul,
    "rx_delay" / cs.Int8ul,
    "cflist" / cs.Bytes(cs.this._.cflist_len),
    "mic" / cs.Bytes(4),
)
_DL_SETTINGS = cs.BitStruct(
    "opt_neg" / cs.Flag, "rx1_dr_offset" / cs.BitsInteger(3), "rx2_data_rate" / cs.BitsInteger(4)
)
_CFLIST_FREQ = cs.Struct("freqs" / cs.Array(5, cs.Int24ul), "cflist_type" / cs.Int8ul)
_CFLIST_MASK = cs.Struct(
    "ch_masks" / cs.Array(5, cs.Int16ul), "rfu" / cs.Bytes(5), "cflist_type" / cs.Int8ul
)


_JOIN_REQUEST_MHDR = MHDR(MType.JOIN_REQUEST)
_JOIN_ACCEPT_MHDR = MHDR(MType.JOIN_ACCEPT)


def _app_key(key: KeyLike) -> bytes:
    return _key(key, "AppKey")


# -- Join-Request -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinRequest:
    """A Join-Request (L2 §6.2.5)."""

    join_eui: EUI64
    dev_eui: EUI64
    dev_nonce: int
    mic: bytes
    mhdr: MHDR = _JOIN_REQUEST_MHDR  # kept so that RFU bits re-encode as received

    def __post_init__(self) -> None:
        if self.mhdr.mtype != MType.JOIN_REQUEST:
            raise EncodeError("a Join-Request's MHDR must say Join-Request")
        if not 0 <= self.dev_nonce <= 0xFFFF:
            raise EncodeError(f"DevNonce is 16 bits, got {self.dev_nonce}")
        if len(self.mic) != 4:
            raise EncodeError(f"MIC is 4 bytes, got {len(self.mic)}")

    mtype = MType.JOIN_REQUEST

    @classmethod
    def build(
        cls, app_key: KeyLike, join_eui: EUI64, dev_eui: EUI64, dev_nonce: int
    ) -> JoinRequest:
        unsigned = cls(join_eui, dev_eui, dev_nonce, bytes(4))
        return cls(join_eui, dev_eui, dev_nonce, unsigned.compute_mic(app_key))

    @classmethod
    def from_bytes(cls, data: bytes) -> JoinRequest:
        if len(data) != JOIN_REQUEST_SIZE:
            raise FrameError(f"a Join-Request is {JOIN_REQUEST_SIZE} bytes, got {len(data)}")
        mhdr = MHDR.from_bytes(bytes(data[:1]))  # refuses Major != 0
        if mhdr.mtype != MType.JOIN_REQUEST:
            raise FrameError("MType is not Join-Request")
        p = _layout.parse(_JOIN_REQUEST, bytes(data))
        return cls(EUI64(p.join_eui), EUI64(p.dev_eui), p.dev_nonce, bytes(p.mic), mhdr)

    def _signed_part(self) -> bytes:
        return bytes(
            _layout.build(
                _JOIN_REQUEST,
                {
                    "mhdr": self.mhdr.to_bytes()[0],
                    "join_eui": self.join_eui.value,
                    "dev_eui": self.dev_eui.value,
                    "dev_nonce": self.dev_nonce,
                    "mic": bytes(4),
                },
            )
        )[:-4]

    def to_bytes(self) -> bytes:
        return self._signed_part() + self.mic

    def compute_mic(self, app_key: KeyLike) -> bytes:
        return crypto.join_mic(_app_key(app_key), self._signed_part())

    def mic_ok(self, app_key: KeyLike) -> bool:
        return self.compute_mic(app_key) == self.mic

    def verify_mic(self, app_key: KeyLike) -> None:
        if not self.mic_ok(app_key):
            raise MICError(
                f"Join-Request MIC does not verify for DevEUI {self.dev_eui}",
                dev_eui=self.dev_eui.hex(),
            )


# -- Join-Accept parts ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DLSettings:
    """Downlink settings (L2 §6.2.6 / RP002 §2.x.7): RX1 DR offset and RX2 data rate."""

    rx1_dr_offset: int = 0
    rx2_data_rate: int = 0
    opt_neg: bool = False  # bit 7: RFU in 1.0.x, OptNeg in 1.1

    def __post_init__(self) -> None:
        if not 0 <= self.rx1_dr_offset <= 7:
            raise EncodeError(f"RX1DROffset is 3 bits (0..7), got {self.rx1_dr_offset}")
        if not 0 <= self.rx2_data_rate <= 15:
            raise EncodeError(f"RX2DataRate is 4 bits (0..15), got {self.rx2_data_rate}")

    @classmethod
    def from_bytes(cls, data: bytes) -> DLSettings:
        if len(data) != 1:
            raise FrameError(f"DLSettings is 1 byte, got {len(data)}")
        p = _layout.parse(_DL_SETTINGS, bytes(data))
        return cls(p.rx1_dr_offset, p.rx2_data_rate, p.opt_neg)

    def to_bytes(self) -> bytes:
        return bytes(
            _layout.build(
                _DL_SETTINGS,
                {
                    "opt_neg": self.opt_neg,
                    "rx1_dr_offset": self.rx1_dr_offset,
                    "rx2_data_rate": self.rx2_data_rate,
                },
            )
        )


@dataclass(frozen=True, slots=True)
class CFListFrequencies:
    """CFListType 0: five extra channel frequencies in Hz (0 = no channel)."""

    frequencies_hz: tuple[int, int, int, int, int]

    def __post_init__(self) -> None:
        freqs = tuple(self.frequencies_hz)
        if len(freqs) != 5:
            raise EncodeError(f"a CFList holds 5 frequencies, got {len(freqs)}")
        for f in freqs:
            if f % 100 or not 0 <= f // 100 < (1 << 24):
                raise EncodeError(f"CFList frequency {f} Hz is not a 24-bit multiple of 100 Hz")
        object.__setattr__(self, "frequencies_hz", freqs)

    cflist_type = 0

    def to_bytes(self) -> bytes:
        return bytes(
            _layout.build(
                _CFLIST_FREQ, {"freqs": [f // 100 for f in self.frequencies_hz], "cflist_type": 0}
            )
        )


@dataclass(frozen=True, slots=True)
class CFListChannelMask:
    """CFListType 1 (US915, AU915, CN470): ChMask0..4, channel ``16*i + bit`` enabled."""

    ch_masks: tuple[int, int, int, int, int]

    def __post_init__(self) -> None:
        masks = tuple(self.ch_masks)
        if len(masks) != 5 or any(not 0 <= m <= 0xFFFF for m in masks):
            raise EncodeError("a type 1 CFList holds five 16-bit ChMask values")
        object.__setattr__(self, "ch_masks", masks)

    cflist_type = 1

    def enabled_channels(self) -> list[int]:
        return [16 * i + b for i, m in enumerate(self.ch_masks) for b in range(16) if m >> b & 1]

    def to_bytes(self) -> bytes:
        return bytes(
            _layout.build(
                _CFLIST_MASK, {"ch_masks": list(self.ch_masks), "rfu": bytes(5), "cflist_type": 1}
            )
        )


CFList = CFListFrequencies | CFListChannelMask


def _parse_cflist(raw: bytes) -> CFList:
    kind = raw[15]
    if kind == 0:
        p = _layout.parse(_CFLIST_FREQ, raw)
        f = [v * 100 for v in p.freqs]
        return CFListFrequencies((f[0], f[1], f[2], f[3], f[4]))
    if kind == 1:
        p = _layout.parse(_CFLIST_MASK, raw)
        m = list(p.ch_masks)
        return CFListChannelMask((m[0], m[1], m[2], m[3], m[4]))
    raise FrameError(f"CFListType {kind} is RFU (0 = frequencies, 1 = channel mask)")


# -- Join-Accept ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class JoinAccept:
    """A **plaintext** Join-Accept (L2 §6.2.6)."""

    join_nonce: int
    net_id: NetID
    dev_addr: DevAddr
    dl_settings: DLSettings
    rx_delay: int
    cflist: CFList | None
    mic: bytes
    mhdr: MHDR = _JOIN_ACCEPT_MHDR  # kept so that RFU bits re-encode as received

    mtype = MType.JOIN_ACCEPT

    def __post_init__(self) -> None:
        if self.mhdr.mtype != MType.JOIN_ACCEPT:
            raise EncodeError("a Join-Accept's MHDR must say Join-Accept")
        if not 0 <= self.join_nonce < (1 << 24):
            raise EncodeError(f"JoinNonce is 24 bits, got {self.join_nonce}")
        if not 0 <= self.rx_delay <= 15:
            raise EncodeError(f"RxDelay Del is 4 bits (0..15 s, 0 means 1 s), got {self.rx_delay}")
        if len(self.mic) != 4:
            raise EncodeError(f"MIC is 4 bytes, got {len(self.mic)}")

    @property
    def rx1_delay_s(self) -> int:
        """RECEIVE_DELAY1 in seconds: Del, with 0 meaning 1 s (L2 §5.7)."""
        return self.rx_delay or 1

    @classmethod
    def build(
        cls,
        app_key: KeyLike,
        *,
        join_nonce: int,
        net_id: NetID,
        dev_addr: DevAddr,
        dl_settings: DLSettings | None = None,
        rx_delay: int = 1,
        cflist: CFList | None = None,
    ) -> JoinAccept:
        settings = dl_settings if dl_settings is not None else DLSettings()
        unsigned = cls(join_nonce, net_id, dev_addr, settings, rx_delay, cflist, bytes(4))
        return cls(
            join_nonce, net_id, dev_addr, settings, rx_delay, cflist, unsigned.compute_mic(app_key)
        )

    @classmethod
    def from_bytes(cls, plain: bytes) -> JoinAccept:
        """Parse the **decrypted** Join-Accept (17 or 33 bytes, MHDR and MIC included)."""
        plain = bytes(plain)
        if len(plain) not in JOIN_ACCEPT_SIZES:
            raise FrameError(f"a Join-Accept is 17 or 33 bytes, got {len(plain)}")
        mhdr = MHDR.from_bytes(plain[:1])
        if mhdr.mtype != MType.JOIN_ACCEPT:
            raise FrameError("MType is not Join-Accept")
        p = _layout.parse(_JOIN_ACCEPT, plain, cflist_len=len(plain) - 17)
        if p.rx_delay & 0xF0:
            raise FrameError(f"RxDelay RFU bits 7..4 are set ({p.rx_delay:#04x})")
        cflist = _parse_cflist(bytes(p.cflist)) if p.cflist else None
        return cls(
            p.join_nonce,
            NetID(p.net_id),
            DevAddr(p.dev_addr),
            DLSettings.from_bytes(bytes([p.dl_settings])),
            p.rx_delay,
            cflist,
            bytes(p.mic),
            mhdr,
        )

    def _signed_part(self) -> bytes:
        cflist = b"" if self.cflist is None else self.cflist.to_bytes()
        built = _layout.build(
            _JOIN_ACCEPT,
            {
                "mhdr": self.mhdr.to_bytes()[0],
                "join_nonce": self.join_nonce,
                "net_id": self.net_id.value,
                "dev_addr": self.dev_addr.value,
                "dl_settings": self.dl_settings.to_bytes()[0],
                "rx_delay": self.rx_delay,
                "cflist": cflist,
                "mic": bytes(4),
            },
            cflist_len=len(cflist),
        )
        return bytes(built)[:-4]

    def to_bytes(self) -> bytes:
        """The plaintext Join-Accept, MIC included."""
        return self._signed_part() + self.mic

    def compute_mic(self, app_key: KeyLike) -> bytes:
        return crypto.join_mic(_app_key(app_key), self._signed_part())

    def mic_ok(self, app_key: KeyLike) -> bool:
        return self.compute_mic(app_key) == self.mic

    def encrypt(self, app_key: KeyLike) -> bytes:
        """The on-air Join-Accept (what the network server sends)."""
        return crypto.join_accept_encrypt(_app_key(app_key), self.to_bytes())

    @classmethod
    def decrypt(cls, phy: bytes, app_key: KeyLike, *, verify: bool = True) -> JoinAccept:
        """Decrypt an on-air Join-Accept, parse it and (by default) check its MIC."""
        return EncryptedJoinAccept.from_bytes(phy).decrypt(app_key, verify=verify)

    def session_keys(self, app_key: KeyLike, dev_nonce: int) -> SessionKeys:
        """NwkSKey and AppSKey for the Join-Request's ``dev_nonce`` (L2 §6.2.6)."""
        return derive_session_keys(
            _AESKey(_app_key(app_key)), self.join_nonce, self.net_id, dev_nonce
        )


@dataclass(frozen=True, slots=True)
class EncryptedJoinAccept:
    """A Join-Accept as on the air: MHDR in the clear, the rest encrypted with the AppKey."""

    data: bytes

    mtype = MType.JOIN_ACCEPT

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedJoinAccept:
        data = bytes(data)
        if len(data) not in JOIN_ACCEPT_SIZES:
            raise FrameError(f"a Join-Accept is 17 or 33 bytes on the air, got {len(data)}")
        MHDR.from_bytes(data[:1])
        if data[0] >> 5 != MType.JOIN_ACCEPT:
            raise FrameError("MType is not Join-Accept")
        return cls(data)

    def to_bytes(self) -> bytes:
        return self.data

    def decrypt(self, app_key: KeyLike, *, verify: bool = True) -> JoinAccept:
        """Decrypt with the AppKey; raises :class:`MICError` when ``verify`` and the MIC fails
        (the usual sign of a wrong AppKey)."""
        key = _app_key(app_key)
        plain = crypto.join_accept_decrypt(key, self.data)
        # MIC first: with a wrong AppKey the plaintext is noise, and "MIC does not verify" is
        # the useful answer rather than whatever field the noise happens to break.
        if verify and crypto.join_mic(key, plain[:-4]) != plain[-4:]:
            raise MICError("Join-Accept MIC does not verify (wrong AppKey?)")
        return JoinAccept.from_bytes(plain)
