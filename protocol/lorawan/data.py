"""Data frames: build with encryption and MIC, parse, verify, decrypt (LoRaWAN L2 1.0.4 §4.3).

``PHYPayload = MHDR | FHDR | [FPort | FRMPayload] | MIC`` (L2 §4.1, §4.3). Rules applied here:

- FPort 0 means the FRMPayload carries MAC commands and is encrypted with the **NwkSKey**;
  FPort 1..223 are application ports (AppSKey); 224 is the MAC layer test protocol;
  225..255 are RFU (L2 §4.3.2).
- Without FPort there is no FRMPayload (L2 §4.3.2).
- MAC commands travel in FOpts **or** in an FPort 0 payload, never both in one frame
  (L2 §4.3.1.6); FOpts are not encrypted in 1.0.x.
- The MIC is ``aes128_cmac(NwkSKey, B0 | msg)[0:4]`` over the **encrypted** FRMPayload, with the
  full 32-bit FCnt in B0 (L2 §4.4); the FHDR carries only its 16 low bits.

A :class:`DataFrame` keeps the FRMPayload as it is on the air (encrypted); :meth:`DataFrame.build`
encrypts and signs, :meth:`DataFrame.decrypt` and :meth:`DataFrame.verify_mic` read.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import EncodeError, FrameError, MICError
from protocol.lorawan import crypto
from protocol.lorawan.fhdr import FHDR, FCtrl
from protocol.lorawan.keys import AESKey, DevAddr
from protocol.lorawan.maccommands import MACCommand, UnknownMACCommand, parse_mac_commands
from protocol.lorawan.mhdr import MHDR, MType

__all__ = ["MIN_DATA_FRAME", "DataFrame", "KeyLike"]

KeyLike = AESKey | bytes
MIN_DATA_FRAME = 12  # MHDR 1 + FHDR 7 + MIC 4 (L2 §4.3)
MAX_PHY_PAYLOAD = 255  # the LoRa PHY length field is one octet


def _key(key: KeyLike, what: str) -> bytes:
    raw = key.to_bytes() if isinstance(key, AESKey) else key
    if not isinstance(raw, bytes | bytearray) or len(raw) != 16:
        raise EncodeError(f"{what} must be a 16-byte AES key")
    return bytes(raw)


def _check_fport(fport: int | None, error: type[EncodeError] | type[FrameError]) -> None:
    if fport is not None and not 0 <= fport <= 224:
        if 225 <= fport <= 255:
            raise error(f"FPort {fport} is RFU: 225..255 are reserved (L2 §4.3.2)")
        raise error(f"FPort is one octet (0..255), got {fport}")


@dataclass(frozen=True, slots=True)
class DataFrame:
    """A data frame as on the air; ``frm_payload`` is encrypted."""

    mhdr: MHDR
    fhdr: FHDR
    fport: int | None
    frm_payload: bytes
    mic: bytes

    def __post_init__(self) -> None:
        if not self.mhdr.mtype.is_data:
            raise EncodeError(f"{self.mhdr.mtype.json_name} is not a data frame MType")
        if self.fhdr.fctrl.uplink != self.mhdr.mtype.is_uplink:
            raise EncodeError("FCtrl direction does not match the MType")
        _check_fport(self.fport, EncodeError)
        if self.fport is None and self.frm_payload:
            raise EncodeError("an FRMPayload needs an FPort (L2 §4.3.2)")
        if self.fport == 0 and self.fhdr.fopts:
            raise EncodeError("MAC commands in FOpts and in FPort 0 at once (L2 §4.3.1.6)")
        if len(self.mic) != 4:
            raise EncodeError(f"MIC is 4 bytes, got {len(self.mic)}")
        size = 1 + self.fhdr.size + (0 if self.fport is None else 1) + len(self.frm_payload) + 4
        if size > MAX_PHY_PAYLOAD:
            raise EncodeError(f"PHYPayload of {size} bytes exceeds {MAX_PHY_PAYLOAD}")
        object.__setattr__(self, "frm_payload", bytes(self.frm_payload))
        object.__setattr__(self, "mic", bytes(self.mic))

    # -- views -------------------------------------------------------------------------------
    @property
    def mtype(self) -> MType:
        return self.mhdr.mtype

    @property
    def uplink(self) -> bool:
        return self.mhdr.mtype.is_uplink

    @property
    def direction(self) -> int:
        """0 for uplink, 1 for downlink (the Dir octet of B0 and A_i)."""
        return crypto.DIR_UP if self.uplink else crypto.DIR_DOWN

    @property
    def dev_addr(self) -> DevAddr:
        return self.fhdr.dev_addr

    @property
    def fctrl(self) -> FCtrl:
        return self.fhdr.fctrl

    @property
    def fcnt16(self) -> int:
        return self.fhdr.fcnt16

    # -- bytes -------------------------------------------------------------------------------
    @classmethod
    def from_bytes(cls, data: bytes) -> DataFrame:
        """Parse a data-frame PHYPayload; lengths are checked before any field is read."""
        data = bytes(data)
        if len(data) < MIN_DATA_FRAME:
            raise FrameError(
                f"a data frame is at least {MIN_DATA_FRAME} bytes (MHDR FHDR MIC), got {len(data)}"
            )
        if len(data) > MAX_PHY_PAYLOAD:
            raise FrameError(f"a PHYPayload is at most {MAX_PHY_PAYLOAD} bytes, got {len(data)}")
        mhdr = MHDR.from_bytes(data[:1])
        if not mhdr.mtype.is_data:
            raise FrameError(f"MType {mhdr.mtype.json_name} is not a data frame")
        body = data[1:-4]
        fhdr, used = FHDR.parse(body, uplink=mhdr.mtype.is_uplink)
        rest = body[used:]
        fport = rest[0] if rest else None
        _check_fport(fport, FrameError)
        if fport == 0 and fhdr.fopts:
            raise FrameError("MAC commands in FOpts and in FPort 0 at once (L2 §4.3.1.6)")
        try:
            return cls(mhdr, fhdr, fport, rest[1:], data[-4:])
        except EncodeError as exc:  # pragma: no cover - every rule is checked above
            raise FrameError(exc.message) from exc

    def to_bytes(self) -> bytes:
        return self._signed_part() + self.mic

    def _signed_part(self) -> bytes:
        port = b"" if self.fport is None else bytes([self.fport])
        return self.mhdr.to_bytes() + self.fhdr.to_bytes() + port + self.frm_payload

    # -- crypto ------------------------------------------------------------------------------
    def _full_fcnt(self, fcnt: int | None) -> int:
        if fcnt is None:
            return self.fhdr.fcnt16
        if not 0 <= fcnt <= 0xFFFFFFFF:
            raise EncodeError(f"FCnt is a 32-bit counter, got {fcnt}")
        if fcnt & 0xFFFF != self.fhdr.fcnt16:
            raise EncodeError(
                f"the 16 low bits of FCnt {fcnt} do not match the frame's FCnt {self.fhdr.fcnt16}"
            )
        return fcnt

    def compute_mic(self, nwk_s_key: KeyLike, fcnt: int | None = None) -> bytes:
        """The MIC this frame should carry; ``fcnt`` is the full 32-bit counter (default: the
        16 on-air bits, i.e. high bits zero)."""
        full = self._full_fcnt(fcnt)
        return crypto.data_mic(
            _key(nwk_s_key, "NwkSKey"),
            self.direction,
            self.dev_addr.value,
            full,
            self._signed_part(),
        )

    def mic_ok(self, nwk_s_key: KeyLike, fcnt: int | None = None) -> bool:
        return self.compute_mic(nwk_s_key, fcnt) == self.mic

    def verify_mic(self, nwk_s_key: KeyLike, fcnt: int | None = None) -> None:
        """Raise :class:`MICError` (with ``dev_addr`` and ``f_cnt``) when the MIC is wrong."""
        if not self.mic_ok(nwk_s_key, fcnt):
            raise MICError(
                f"MIC does not verify for DevAddr {self.dev_addr} FCnt {self._full_fcnt(fcnt)}",
                dev_addr=self.dev_addr.hex(),
                f_cnt=self._full_fcnt(fcnt),
            )

    def payload_key(self, nwk_s_key: KeyLike | None, app_s_key: KeyLike | None) -> KeyLike | None:
        """The key that ciphers this frame's FRMPayload: NwkSKey for FPort 0, else AppSKey."""
        return nwk_s_key if self.fport == 0 else app_s_key

    def decrypt(
        self,
        *,
        app_s_key: KeyLike | None = None,
        nwk_s_key: KeyLike | None = None,
        fcnt: int | None = None,
    ) -> bytes:
        """The plaintext FRMPayload (b"" without FPort). FPort 0 needs ``nwk_s_key``."""
        if self.fport is None:
            return b""
        key = self.payload_key(nwk_s_key, app_s_key)
        if key is None:
            which = "NwkSKey" if self.fport == 0 else "AppSKey"
            raise EncodeError(f"decrypting FPort {self.fport} needs the {which}")
        return crypto.frm_payload_cipher(
            _key(key, "payload key"),
            self.direction,
            self.dev_addr.value,
            self._full_fcnt(fcnt),
            self.frm_payload,
        )

    def mac_commands(
        self,
        *,
        nwk_s_key: KeyLike | None = None,
        fcnt: int | None = None,
        strict: bool = True,
    ) -> list[MACCommand | UnknownMACCommand]:
        """The MAC commands this frame carries, from FOpts or (FPort 0) the decrypted payload.

        An FPort 0 payload needs ``nwk_s_key``. See :func:`parse_mac_commands` for ``strict``.
        """
        raw = self.decrypt(nwk_s_key=nwk_s_key, fcnt=fcnt) if self.fport == 0 else self.fhdr.fopts
        return parse_mac_commands(raw, uplink=self.uplink, strict=strict)

    @classmethod
    def build(
        cls,
        *,
        mtype: MType,
        dev_addr: DevAddr,
        fcnt: int,
        nwk_s_key: KeyLike,
        app_s_key: KeyLike | None = None,
        fport: int | None = None,
        payload: bytes = b"",
        fopts: bytes = b"",
        adr: bool = False,
        adr_ack_req: bool = False,
        ack: bool = False,
        class_b: bool = False,
        f_pending: bool = False,
    ) -> DataFrame:
        """Build a data frame: encrypt ``payload`` (plaintext) and compute the MIC.

        ``fcnt`` is the full 32-bit counter; its 16 low bits go on the air (L2 §4.3.1.5).
        """
        mtype = MType(mtype)
        if not mtype.is_data:
            raise EncodeError(f"{mtype.json_name} is not a data frame MType")
        if not 0 <= fcnt <= 0xFFFFFFFF:
            raise EncodeError(f"FCnt is a 32-bit counter, got {fcnt}")
        _check_fport(fport, EncodeError)
        if fport is None and payload:
            raise EncodeError("an FRMPayload needs an FPort (L2 §4.3.2)")
        if len(fopts) > 15:
            raise EncodeError(f"FOpts is at most 15 bytes (L2 §4.3.1.6), got {len(fopts)}")
        uplink = mtype.is_uplink
        fctrl = FCtrl(
            uplink=uplink,
            adr=adr,
            adr_ack_req=adr_ack_req,
            ack=ack,
            class_b=class_b,
            f_pending=f_pending,
            fopts_len=len(fopts),
        )
        fhdr = FHDR(dev_addr, fctrl, fcnt & 0xFFFF, bytes(fopts))
        encrypted = b""
        if fport is not None and payload:
            key = nwk_s_key if fport == 0 else app_s_key
            if key is None:
                raise EncodeError(f"FPort {fport} needs the AppSKey")
            encrypted = crypto.frm_payload_cipher(
                _key(key, "payload key"),
                crypto.DIR_UP if uplink else crypto.DIR_DOWN,
                dev_addr.value,
                fcnt,
                bytes(payload),
            )
        mhdr = MHDR(mtype)
        port = b"" if fport is None else bytes([fport])
        if fport == 0 and fopts:
            raise EncodeError("MAC commands in FOpts and in FPort 0 at once (L2 §4.3.1.6)")
        signed = mhdr.to_bytes() + fhdr.to_bytes() + port + encrypted
        if len(signed) + 4 > MAX_PHY_PAYLOAD:
            raise EncodeError(f"PHYPayload of {len(signed) + 4} bytes exceeds {MAX_PHY_PAYLOAD}")
        mic = crypto.data_mic(
            _key(nwk_s_key, "NwkSKey"),
            crypto.DIR_UP if uplink else crypto.DIR_DOWN,
            dev_addr.value,
            fcnt,
            signed,
        )
        return cls(mhdr, fhdr, fport, encrypted, mic)
