"""Time on air of a LoRa (and FSK) frame (Semtech AN1200.13 "LoRa Modem Designer's Guide";
SX1276 datasheet §4.1.1.7; FSK as in LoRaMac-node ``RegionCommon``/the SX1276 FSK packet).

LoRa::

    Tsym      = 2**SF / BW
    Tpreamble = (Npreamble + 4.25) * Tsym
    Npayload  = 8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE))) * (CR + 4), 0)
    ToA       = Tpreamble + Npayload * Tsym

LoRaWAN uses Npreamble = 8, CR = 1 (4/5), explicit header (IH = 0), CRC on uplinks only, and
low-data-rate optimisation (DE) where the symbol time reaches 16 ms: SF11 and SF12 at 125 kHz,
SF12 at 250 kHz (LoRaMac-node ``SX1276SetTxConfig``). PL is the PHYPayload length.

FSK (EU868 DR7, 50 kbit/s): 5 preamble bytes, 3 sync bytes, 1 length byte, payload, 2 CRC bytes.
"""

from __future__ import annotations

import math

from protocol.errors import EncodeError
from protocol.lorawan.region.base import Modulation, Region

__all__ = ["fsk_time_on_air_s", "lora_time_on_air_s", "time_on_air_s"]


def lora_time_on_air_s(
    payload_len: int,
    *,
    spreading_factor: int,
    bandwidth_hz: int,
    coding_rate: int = 1,
    preamble_symbols: int = 8,
    crc: bool = True,
    implicit_header: bool = False,
    low_data_rate_optimize: bool | None = None,
) -> float:
    """Seconds on air of a LoRa frame of ``payload_len`` bytes.

    ``coding_rate`` is 1..4 for 4/5..4/8. ``low_data_rate_optimize=None`` chooses it as the
    radios do: on when the symbol time is at least 16 ms.
    """
    if not 0 <= payload_len <= 255:
        raise EncodeError(f"a LoRa payload is 0..255 bytes, got {payload_len}")
    if not 5 <= spreading_factor <= 12:
        raise EncodeError(f"spreading factor must be 5..12, got {spreading_factor}")
    if bandwidth_hz <= 0:
        raise EncodeError(f"bandwidth must be positive, got {bandwidth_hz}")
    if not 1 <= coding_rate <= 4:
        raise EncodeError(f"coding rate index must be 1..4 (4/5..4/8), got {coding_rate}")
    t_sym = (1 << spreading_factor) / bandwidth_hz
    de = t_sym >= 0.016 if low_data_rate_optimize is None else low_data_rate_optimize
    numerator = (
        8 * payload_len - 4 * spreading_factor + 28 + 16 * int(crc) - 20 * int(implicit_header)
    )
    symbols = 8 + max(
        math.ceil(numerator / (4 * (spreading_factor - 2 * int(de)))) * (coding_rate + 4), 0
    )
    return (preamble_symbols + 4.25) * t_sym + symbols * t_sym


def fsk_time_on_air_s(payload_len: int, *, bitrate_bps: int = 50_000, crc: bool = True) -> float:
    """Seconds on air of an FSK frame (5 B preamble, 3 B sync, 1 B length, payload, 2 B CRC)."""
    if not 0 <= payload_len <= 255:
        raise EncodeError(f"an FSK payload is 0..255 bytes, got {payload_len}")
    return (5 + 3 + 1 + payload_len + (2 if crc else 0)) * 8 / bitrate_bps


def time_on_air_s(region: Region, dr: int, phy_len: int, *, uplink: bool = True) -> float:
    """Seconds on air of a LoRaWAN PHYPayload of ``phy_len`` bytes at ``region`` DR ``dr``.

    Uplinks carry a PHY CRC, downlinks do not (L2 §4.1).
    """
    rate = region.data_rate(dr)
    if rate.modulation is Modulation.FSK:
        return fsk_time_on_air_s(phy_len, bitrate_bps=rate.bitrate_bps)
    if rate.modulation is not Modulation.LORA or rate.spreading_factor is None:
        raise EncodeError(f"{region.name} DR{dr} is {rate.modulation.value}: no airtime model")
    return lora_time_on_air_s(
        phy_len, spreading_factor=rate.spreading_factor, bandwidth_hz=rate.bandwidth_hz, crc=uplink
    )
