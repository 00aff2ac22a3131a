"""FUOTA on LoRaWAN for CPython: TS003 clock sync, TS004 multicast setup, TS005 fragmentation.

Abbreviations: **TS003** = LoRaWAN Application Layer Clock Synchronization 1.0.0, **TS004** =
Remote Multicast Setup 1.0.0, **TS005** = Fragmented Data Block Transport 1.0.0.

================  ==========================================================================
``clocksync``     TS003 commands (fPort 202), both ways
``mcsetup``       TS004 commands (fPort 200), both ways
``fragmentation`` TS005 commands (fPort 201), both ways
``keys``          TS004 §3.1.2 multicast key derivation and McKey wrapping
``fec``           TS005 annex parity matrix: encoder (and a reference decoder)
``bundle``        the signed update bundle the fragments carry
================  ==========================================================================

Each command is a frozen dataclass with ``to_bytes()``; ``decode_downlink``/``decode_uplink`` of a
package parse a payload into commands and raise only :class:`protocol.errors.DecodeError`.
``encode_commands`` joins several into one payload. The node side is firmware/lib/fuota/; both
run the vectors in protocol/vectors/fuota.json.
"""

from protocol.fuota import bundle, clocksync, fec, fragmentation, keys, mcsetup
from protocol.fuota._command import (
    Command,
    PackageVersionAns,
    PackageVersionReq,
    encode_commands,
)

__all__ = [
    "Command",
    "PackageVersionAns",
    "PackageVersionReq",
    "bundle",
    "clocksync",
    "encode_commands",
    "fec",
    "fragmentation",
    "keys",
    "mcsetup",
]
