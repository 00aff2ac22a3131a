"""EU863-870 (RP002-1.0.4 §2.2; LoRaMac-node ``src/mac/region/RegionEU868.h``).

- DR table and TX power (§2.2.3): DR0..5 LoRa SF12..SF7/125 kHz, DR6 SF7/250 kHz, DR7 FSK
  50 kbit/s, DR8..11 LR-FHSS (uplink only). TXPower n = MaxEIRP − 2n dB, n = 0..7, MaxEIRP 16 dBm.
- Maximum payload (§2.2.6, dwell time not applicable): M = 59/59/59/123/250/250/250/250 for
  DR0..7 (N = M − 8). :data:`REPEATER_MAX_MAC_PAYLOAD` is the "repeater compatible" table
  (230 for DR4..7) that older Regional Parameters used and LoRaMac-node keeps as
  ``MaxPayloadOfDatarateRepeaterEU868``.
- Default channels (§2.2.2): 868.1, 868.3, 868.5 MHz, DR0..5, used for Join-Requests; up to 16.
- RX1 (§2.2.7): same frequency, DR = max(uplink DR − RX1DROffset, 0), offset 0..5; LR-FHSS
  uplinks (DR8..11) answer on DR1/DR2 as in ChirpStack lrwn ``region/eu868.rs``.
  RX2: 869.525 MHz, DR0.
- Duty cycle: ETSI EN 300 220 sub-bands as in LoRaMac-node's band table (``RegionEU868.c``,
  ranges inclusive): 863.0-865.0 MHz 0.1 %; g 865.0-868.0 MHz 1 %; g1 868.0-868.6 MHz 1 % (the
  default channels); g2 868.7-869.2 MHz 0.1 %; g3 869.4-869.65 MHz 10 % (RX2); g4 869.7-870.0 1 %.
"""

from __future__ import annotations

from protocol.lorawan.region.base import Channel, DataRate, Modulation, Region, SubBand

__all__ = ["EU868", "REPEATER_MAX_MAC_PAYLOAD"]

_L = Modulation.LORA

_DATA_RATES = (
    DataRate(0, _L, 12, 125_000, 250, 59, 51),
    DataRate(1, _L, 11, 125_000, 440, 59, 51),
    DataRate(2, _L, 10, 125_000, 980, 59, 51),
    DataRate(3, _L, 9, 125_000, 1760, 123, 115),
    DataRate(4, _L, 8, 125_000, 3125, 250, 242),
    DataRate(5, _L, 7, 125_000, 5470, 250, 242),
    DataRate(6, _L, 7, 250_000, 11000, 250, 242),
    DataRate(7, Modulation.FSK, None, 0, 50000, 250, 242),
    # LR-FHSS (RP002-1.0.3+): CR1/3 and CR2/3 on 137 kHz and 336 kHz occupied bandwidth.
    DataRate(8, Modulation.LR_FHSS, None, 137_000, 162, 58, 50, downlink=False),
    DataRate(9, Modulation.LR_FHSS, None, 137_000, 325, 123, 115, downlink=False),
    DataRate(10, Modulation.LR_FHSS, None, 336_000, 162, 58, 50, downlink=False),
    DataRate(11, Modulation.LR_FHSS, None, 336_000, 325, 123, 115, downlink=False),
)

REPEATER_MAX_MAC_PAYLOAD = (59, 59, 59, 123, 230, 230, 230, 230)

EU868 = Region(
    name="EU868",
    frequency_min_hz=863_000_000,
    frequency_max_hz=870_000_000,
    data_rates=_DATA_RATES,
    default_channels=(
        Channel(868_100_000, 0, 5),
        Channel(868_300_000, 0, 5),
        Channel(868_500_000, 0, 5),
    ),
    max_channels=16,
    rx1_dr_table=(
        *(tuple(max(dr - offset, 0) for offset in range(6)) for dr in range(8)),
        # LR-FHSS uplinks answer on LoRa DR1/DR2 (ChirpStack lrwn ``eu868.rs``)
        (1, 0, 0, 0, 0, 0),
        (2, 1, 0, 0, 0, 0),
        (1, 0, 0, 0, 0, 0),
        (2, 1, 0, 0, 0, 0),
    ),
    rx2_frequency_hz=869_525_000,
    rx2_data_rate=0,
    max_eirp_dbm=16.0,
    tx_power_offsets_db=tuple(2.0 * n for n in range(8)),
    cflist_type=0,
    join_data_rates=(0, 1, 2, 3, 4, 5),
    sub_bands=(
        SubBand("863-865", 863_000_000, 864_999_999, 0.001),  # 865.0 belongs to g
        SubBand("g", 865_000_000, 868_000_000, 0.01),
        SubBand("g1", 868_000_001, 868_600_000, 0.01),
        SubBand("g2", 868_700_000, 869_200_000, 0.001),
        SubBand("g3", 869_400_000, 869_650_000, 0.10),
        SubBand("g4", 869_700_000, 870_000_000, 0.01),
    ),
)
