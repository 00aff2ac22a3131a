"""LoRaWAN 1.0.x layer 2 for CPython: frames, MAC commands, crypto, counters, regions, airtime.

Abbreviations used in every module docstring: **L2** = LoRaWAN L2 1.0.4 (TS001-1.0.4),
**RP** = LoRaWAN Regional Parameters RP002-1.0.4. One module per concept:

=================  ====================================================================
``mhdr``           :class:`MHDR`, :class:`MType` (L2 §4.2)
``fhdr``           :class:`FHDR`, :class:`FCtrl` (up and down differ; L2 §4.3.1)
``data``           :class:`DataFrame`: build (encrypt + MIC), parse, verify, decrypt (L2 §4.3-4.4)
``join``           :class:`JoinRequest`, :class:`JoinAccept` (plaintext),
                   :class:`EncryptedJoinAccept`, :class:`DLSettings`, CFList (L2 §6.2.5-6.2.6)
``maccommands``    every 1.0.4 MAC command both ways; :func:`parse_mac_commands` (L2 §5)
``crypto``         AES-CMAC, MICs, FRMPayload and Join-Accept ciphers (bytes in, bytes out)
``keys``           :class:`EUI64`, :class:`DevAddr`, :class:`NetID`, :class:`AESKey`,
                   :func:`derive_session_keys` (L2 §6.1, §6.2.6)
``fcnt``           :func:`reconstruct_fcnt`: 32-bit FCnt from 16 on-air bits (L2 §4.3.1.5)
``phy``            :meth:`PHYPayload.from_bytes` → the right frame type by MType
``region``         :data:`EU868`, :data:`US915` (RP §2.2, §2.5): DRs, payload sizes, channels,
                   RX1/RX2, delays, TX power, EU868 duty-cycle sub-bands, US915 sub-bands
``airtime``        :func:`time_on_air_s`: LoRa time on air (Semtech AN1200.13)
=================  ====================================================================

Typical use::

    from protocol.lorawan import AESKey, DataFrame, DevAddr, MType, PHYPayload, reconstruct_fcnt

    frame = DataFrame.build(mtype=MType.UNCONFIRMED_DATA_UP, dev_addr=DevAddr.from_hex("01020304"),
                            fcnt=1, fport=1, payload=b"hello", nwk_s_key=nwk, app_s_key=app)
    phy = frame.to_bytes()
    parsed = PHYPayload.from_bytes(phy)        # DataFrame | JoinRequest | EncryptedJoinAccept
    full = reconstruct_fcnt(last_fcnt, parsed.fcnt16)          # FCntError on a replay
    parsed.verify_mic(nwk, full)                               # MICError
    plain = parsed.decrypt(nwk_s_key=nwk, app_s_key=app, fcnt=full)

Conventions: EUIs, DevAddr and NetID are value types that print MSB-first (as consoles do) and
go little-endian on the air; AES keys are used as written and never print. Every decoder of
outside bytes raises only :class:`protocol.errors.ProtocolError` subclasses (``FrameError`` for
frames that do not parse, ``MICError``, ``FCntError``; ``EncodeError`` for values that cannot be
built). Golden vectors: ``protocol/vectors/lorawan.json``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from protocol.lorawan.airtime import lora_time_on_air_s, time_on_air_s
    from protocol.lorawan.crypto import aes_cmac
    from protocol.lorawan.data import DataFrame
    from protocol.lorawan.fcnt import MAX_FCNT_GAP, reconstruct_fcnt
    from protocol.lorawan.fhdr import FHDR, FCtrl
    from protocol.lorawan.join import (
        CFList,
        CFListChannelMask,
        CFListFrequencies,
        DLSettings,
        EncryptedJoinAccept,
        JoinAccept,
        JoinRequest,
    )
    from protocol.lorawan.keys import (
        EUI64,
        AESKey,
        DevAddr,
        NetID,
        SessionKeys,
        derive_session_keys,
    )
    from protocol.lorawan.maccommands import (
        MACCommand,
        MACCommandError,
        UnknownMACCommand,
        UnknownMACCommandError,
        encode_mac_commands,
        parse_mac_commands,
    )
    from protocol.lorawan.mhdr import MHDR, MType
    from protocol.lorawan.phy import Frame, PHYPayload
    from protocol.lorawan.region import EU868, REGIONS, US915, Region

# The names below load their module when first used (PEP 562), not with the package: the frame
# modules need construct (8 MB of a process's RSS with what it imports), and the gateway uses
# only regions, airtime and crypto (issue 17: 100,000 devices in 200 MB).
_HOME = {  # each name of __all__: the module it lives in (loaded when first asked for)
    "lora_time_on_air_s": "airtime",
    "time_on_air_s": "airtime",
    "aes_cmac": "crypto",
    "DataFrame": "data",
    "MAX_FCNT_GAP": "fcnt",
    "reconstruct_fcnt": "fcnt",
    "FCtrl": "fhdr",
    "FHDR": "fhdr",
    "CFList": "join",
    "CFListChannelMask": "join",
    "CFListFrequencies": "join",
    "DLSettings": "join",
    "EncryptedJoinAccept": "join",
    "JoinAccept": "join",
    "JoinRequest": "join",
    "AESKey": "keys",
    "DevAddr": "keys",
    "EUI64": "keys",
    "NetID": "keys",
    "SessionKeys": "keys",
    "derive_session_keys": "keys",
    "MACCommand": "maccommands",
    "MACCommandError": "maccommands",
    "UnknownMACCommand": "maccommands",
    "UnknownMACCommandError": "maccommands",
    "encode_mac_commands": "maccommands",
    "parse_mac_commands": "maccommands",
    "MHDR": "mhdr",
    "MType": "mhdr",
    "Frame": "phy",
    "PHYPayload": "phy",
    "EU868": "region",
    "REGIONS": "region",
    "Region": "region",
    "US915": "region",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found by the next lookup without this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "EU868",
    "EUI64",
    "FHDR",
    "MAX_FCNT_GAP",
    "MHDR",
    "REGIONS",
    "US915",
    "AESKey",
    "CFList",
    "CFListChannelMask",
    "CFListFrequencies",
    "DLSettings",
    "DataFrame",
    "DevAddr",
    "EncryptedJoinAccept",
    "FCtrl",
    "Frame",
    "JoinAccept",
    "JoinRequest",
    "MACCommand",
    "MACCommandError",
    "MType",
    "NetID",
    "PHYPayload",
    "Region",
    "SessionKeys",
    "UnknownMACCommand",
    "UnknownMACCommandError",
    "aes_cmac",
    "derive_session_keys",
    "encode_mac_commands",
    "lora_time_on_air_s",
    "parse_mac_commands",
    "reconstruct_fcnt",
    "time_on_air_s",
]
