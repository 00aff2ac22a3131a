"""US902-928 (RP002-1.0.4 §2.5; LoRaMac-node ``src/mac/region/RegionUS915.h``).

- DR table (§2.5.3): DR0..3 SF10..SF7/125 kHz, DR4 SF8/500 kHz, DR5..6 LR-FHSS (uplink),
  DR8..13 SF12..SF7/500 kHz (downlink). TXPower n = 30 dBm − 2n dB, n = 0..14.
- Maximum payload (§2.5.6): M = 19/61/133/250/250/58/133 for DR0..6, 61/137/250/250/250/250 for
  DR8..13 (N = M − 8).
- Channels (§2.5.2): 64 uplink channels of 125 kHz from 902.3 MHz in 200 kHz steps (DR0..3),
  8 of 500 kHz from 903.0 MHz in 1.6 MHz steps (DR4, and LR-FHSS DR5..6); 8 downlink
  channels of 500 kHz from 923.3 MHz in 600 kHz steps. RX1 uses downlink channel
  ``uplink channel mod 8`` (§2.5.7).
- RX1 DR table (§2.5.7); RX2 923.3 MHz, DR8. Tables cross-checked with ChirpStack lrwn
  ``region/us915.rs`` (RP002-1.0.2..1.0.4 revision) and LoRaMac-node ``RegionUS915.h``.
- Sub-bands: networks usually enable one block of 8 125 kHz channels plus one 500 kHz channel
  ("FSB 2" = channels 8..15 and 65). :func:`sub_band_link_adr_masks` gives the LinkADRReq
  ChMaskCntl/ChMask pairs that select one (ChMaskCntl 7: all 125 kHz channels off, ChMask for
  channels 64..71; then ChMaskCntl 0..3 for a 16-channel block).
"""

from __future__ import annotations

from protocol.errors import EncodeError
from protocol.lorawan.region.base import Channel, DataRate, Modulation, Region

__all__ = [
    "US915",
    "downlink_channel_frequency",
    "rx1_frequency",
    "sub_band_channels",
    "sub_band_link_adr_masks",
    "uplink_channel_frequency",
]

_L = Modulation.LORA

_DATA_RATES = (
    DataRate(0, _L, 10, 125_000, 980, 19, 11, downlink=False),
    DataRate(1, _L, 9, 125_000, 1760, 61, 53, downlink=False),
    DataRate(2, _L, 8, 125_000, 3125, 133, 125, downlink=False),
    DataRate(3, _L, 7, 125_000, 5470, 250, 242, downlink=False),
    DataRate(4, _L, 8, 500_000, 12500, 250, 242, downlink=False),
    DataRate(5, Modulation.LR_FHSS, None, 1_523_000, 162, 58, 50, downlink=False),
    DataRate(6, Modulation.LR_FHSS, None, 1_523_000, 325, 133, 125, downlink=False),
    DataRate(8, _L, 12, 500_000, 980, 61, 53, uplink=False),
    DataRate(9, _L, 11, 500_000, 1760, 137, 129, uplink=False),
    DataRate(10, _L, 10, 500_000, 3900, 250, 242, uplink=False),
    DataRate(11, _L, 9, 500_000, 7000, 250, 242, uplink=False),
    DataRate(12, _L, 8, 500_000, 12500, 250, 242, uplink=False),
    DataRate(13, _L, 7, 500_000, 21900, 250, 242, uplink=False),
)


def uplink_channel_frequency(channel: int) -> int:
    """Frequency of uplink channel 0..71 (0..63: 125 kHz, 64..71: 500 kHz)."""
    if 0 <= channel <= 63:
        return 902_300_000 + 200_000 * channel
    if 64 <= channel <= 71:
        return 903_000_000 + 1_600_000 * (channel - 64)
    raise EncodeError(f"US915 uplink channels are 0..71, got {channel}")


def downlink_channel_frequency(channel: int) -> int:
    """Frequency of downlink channel 0..7 (500 kHz)."""
    if not 0 <= channel <= 7:
        raise EncodeError(f"US915 downlink channels are 0..7, got {channel}")
    return 923_300_000 + 600_000 * channel


def rx1_frequency(uplink_channel: int) -> int:
    """RX1 frequency for an uplink on ``uplink_channel``: downlink channel ``ch mod 8``."""
    uplink_channel_frequency(uplink_channel)  # range check
    return downlink_channel_frequency(uplink_channel % 8)


def sub_band_channels(sub_band: int) -> tuple[int, ...]:
    """Uplink channels of sub-band 1..8 (FSB): eight 125 kHz channels and one 500 kHz."""
    if not 1 <= sub_band <= 8:
        raise EncodeError(f"US915 sub-bands are 1..8, got {sub_band}")
    first = 8 * (sub_band - 1)
    return (*range(first, first + 8), 64 + sub_band - 1)


def sub_band_link_adr_masks(sub_band: int) -> tuple[tuple[int, int], ...]:
    """(ChMaskCntl, ChMask) of the LinkADRReq block that enables only ``sub_band``.

    First ChMaskCntl 7 (all 125 kHz channels off; ChMask applies to 64..71), then the
    16-channel block ChMaskCntl = (sub_band − 1) // 2 with the 8 bits of the sub-band.
    """
    channels = sub_band_channels(sub_band)
    block = channels[0] // 16
    mask = 0
    for ch in channels[:8]:
        mask |= 1 << (ch - 16 * block)
    return ((7, 1 << (sub_band - 1)), (block, mask))


US915 = Region(
    name="US915",
    frequency_min_hz=902_000_000,
    frequency_max_hz=928_000_000,
    data_rates=_DATA_RATES,
    default_channels=tuple(Channel(uplink_channel_frequency(ch), 0, 3) for ch in range(64))
    + tuple(Channel(uplink_channel_frequency(ch), 4, 6) for ch in range(64, 72)),
    max_channels=72,
    rx1_dr_table=(
        (10, 9, 8, 8),
        (11, 10, 9, 8),
        (12, 11, 10, 9),
        (13, 12, 11, 10),
        (13, 13, 12, 11),
        (10, 9, 8, 8),
        (11, 10, 9, 8),
    ),
    rx2_frequency_hz=923_300_000,
    rx2_data_rate=8,
    max_eirp_dbm=30.0,
    tx_power_offsets_db=tuple(2.0 * n for n in range(15)),
    cflist_type=1,
    join_data_rates=(0, 4),
)
