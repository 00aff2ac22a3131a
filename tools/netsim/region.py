"""The emulator's EU868 view: ``protocol.lorawan.region.eu868`` plus GWMP ``datr`` strings.

Sources: RP002-1.0.4 §2.2 through :data:`protocol.lorawan.region.eu868.EU868` (DR table, N,
RX2, TX power); the GWMP ``datr`` of a LoRa frame is ``"SF{sf}BW{bw_khz}"`` (packet_forwarder
PROTOCOL.TXT §4); the demodulation floor per spreading factor is ChirpStack's ``sensitivity``
table used by its default ADR (SF7 −7.5 dB … SF12 −20 dB); the CFList channels are ChirpStack's
shipped EU868 extra channels (867.1-867.9 MHz); downlink powers are ChirpStack's EU868 defaults
(14 dBm in RX1 on 868.x, 27 dBm on 869.525 MHz, the 10 % / 500 mW sub-band).
"""

from __future__ import annotations

import re

from protocol.errors import ProtocolError
from protocol.lorawan.region.base import DataRate, Modulation
from protocol.lorawan.region.eu868 import EU868

__all__ = [
    "EXTRA_CHANNELS_HZ",
    "MAX_DR",
    "MAX_TX_POWER_INDEX",
    "REGION",
    "REGION_CONFIG_ID",
    "RX1_POWER_DBM",
    "RX2_DR",
    "RX2_FREQUENCY_HZ",
    "RX2_POWER_DBM",
    "RegionError",
    "data_rate",
    "dr_of",
    "max_payload",
    "parse_datr",
    "required_snr",
]

REGION = EU868
REGION_CONFIG_ID = "eu868"  # ChirpStack's region config id for EU868
EXTRA_CHANNELS_HZ = (867_100_000, 867_300_000, 867_500_000, 867_700_000, 867_900_000)
RX2_FREQUENCY_HZ = EU868.rx2_frequency_hz
RX2_DR = EU868.rx2_data_rate
MAX_DR = 5  # highest DR ChirpStack's ADR assigns in EU868 (LoRa 125 kHz)
MAX_TX_POWER_INDEX = len(EU868.tx_power_offsets_db) - 1
RX1_POWER_DBM = 14
RX2_POWER_DBM = 27

_REQUIRED_SNR = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
_DATR = re.compile(r"^SF(\d{1,2})BW(\d{2,3})$")


class RegionError(ValueError):
    """A data rate or datr string this region does not have."""


def data_rate(dr: int) -> DataRate:
    try:
        rate = EU868.data_rate(dr)
    except ProtocolError as exc:
        raise RegionError(str(exc)) from None
    if rate.modulation is not Modulation.LORA:
        raise RegionError(f"DR{dr} is not a LoRa data rate")
    return rate


def parse_datr(datr: str) -> tuple[int, int]:
    """``"SF7BW125"`` → ``(7, 125000)``."""
    match = _DATR.match(datr) if isinstance(datr, str) else None
    if match is None:
        raise RegionError(f"not a LoRa datr string: {datr!r}")
    return int(match.group(1)), int(match.group(2)) * 1000


def dr_of(datr: str) -> int:
    """The EU868 DR of a GWMP datr string."""
    sf, bw = parse_datr(datr)
    for rate in EU868.data_rates:
        if rate.modulation is Modulation.LORA and (rate.spreading_factor, rate.bandwidth_hz) == (
            sf,
            bw,
        ):
            return rate.index
    raise RegionError(f"{datr} is not an EU868 data rate")


def max_payload(dr: int) -> int:
    """N: the largest FRMPayload at ``dr`` when FOpts is empty."""
    return data_rate(dr).max_frm_payload


def required_snr(dr: int) -> float:
    sf = data_rate(dr).spreading_factor
    return _REQUIRED_SNR[sf if sf is not None else 7]
