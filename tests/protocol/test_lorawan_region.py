"""Regional parameter tables (RP002-1.0.4) and the time-on-air calculator (AN1200.13)."""

from __future__ import annotations

import pytest

from protocol.errors import EncodeError
from protocol.lorawan import EU868, US915, lora_time_on_air_s, time_on_air_s
from protocol.lorawan.region import eu868, us915


def test_eu868_payload_sizes_and_rates() -> None:
    m = [EU868.data_rate(dr).max_mac_payload for dr in range(8)]
    n = [EU868.data_rate(dr).max_frm_payload for dr in range(8)]
    assert m == [59, 59, 59, 123, 250, 250, 250, 250]
    assert n == [x - 8 for x in m]
    assert eu868.REPEATER_MAX_MAC_PAYLOAD[5] == 230
    assert EU868.data_rate(0).name == "SF12BW125"
    assert EU868.data_rate(6).name == "SF7BW250"
    assert EU868.data_rate(7).bitrate_bps == 50000
    assert EU868.data_rate_for(9, 125_000) == 3
    assert EU868.max_frm_payload(0, fopts_len=5) == 46


def test_eu868_channels_rx_and_delays() -> None:
    assert [c.frequency_hz for c in EU868.default_channels] == [
        868_100_000,
        868_300_000,
        868_500_000,
    ]
    assert all((c.min_dr, c.max_dr) == (0, 5) for c in EU868.default_channels)
    assert (EU868.rx2_frequency_hz, EU868.rx2_data_rate) == (869_525_000, 0)
    assert EU868.rx1_data_rate(5, 0) == 5
    assert EU868.rx1_data_rate(5, 2) == 3
    assert EU868.rx1_data_rate(1, 5) == 0
    assert EU868.rx1_data_rate(9, 1) == 1  # LR-FHSS uplink, LoRa answer
    with pytest.raises(EncodeError, match="RX1DROffset"):
        EU868.rx1_data_rate(5, 6)
    assert (EU868.receive_delay1_s, EU868.receive_delay2_s) == (1, 2)
    assert (EU868.join_accept_delay1_s, EU868.join_accept_delay2_s) == (5, 6)
    assert (EU868.adr_ack_limit, EU868.adr_ack_delay) == (64, 32)
    assert EU868.tx_power_dbm(0) == 16 and EU868.tx_power_dbm(7) == 2
    with pytest.raises(EncodeError):
        EU868.tx_power_dbm(8)


@pytest.mark.parametrize(
    ("freq", "name", "duty"),
    [
        (868_100_000, "g1", 0.01),
        (868_500_000, "g1", 0.01),
        (867_100_000, "g", 0.01),
        (868_800_000, "g2", 0.001),
        (869_525_000, "g3", 0.10),
        (864_000_000, "863-865", 0.001),
        (865_000_000, "g", 0.01),
        (868_000_000, "g", 0.01),
        (868_000_001, "g1", 0.01),
    ],
)
def test_eu868_duty_cycle_sub_bands(freq: int, name: str, duty: float) -> None:
    band = EU868.sub_band_for(freq)
    assert band is not None and (band.name, band.duty_cycle) == (name, duty)


def test_off_time_after_a_frame() -> None:
    band = EU868.sub_band_for(868_100_000)
    assert band is not None
    assert band.off_time_s(1.4828) == pytest.approx(146.8, abs=0.1)  # reference §4: ~147 s
    assert EU868.sub_band_for(869_300_000) is None


def test_us915_tables() -> None:
    assert US915.data_rate(0).max_frm_payload == 11
    assert US915.data_rate(0).max_mac_payload == 19
    assert US915.data_rate(0).name == "SF10BW125"
    assert US915.data_rate(4).name == "SF8BW500"
    assert US915.data_rate(8).name == "SF12BW500" and not US915.data_rate(8).uplink
    assert len(US915.default_channels) == 72
    assert (US915.default_channels[64].min_dr, US915.default_channels[64].max_dr) == (4, 6)
    assert us915.uplink_channel_frequency(0) == 902_300_000
    assert us915.uplink_channel_frequency(63) == 914_900_000
    assert us915.uplink_channel_frequency(64) == 903_000_000
    assert us915.rx1_frequency(9) == 923_900_000
    assert (US915.rx2_frequency_hz, US915.rx2_data_rate) == (923_300_000, 8)
    assert US915.rx1_data_rate(0, 0) == 10
    assert US915.rx1_data_rate(4, 3) == 11
    assert US915.tx_power_dbm(14) == 2
    with pytest.raises(EncodeError):
        US915.data_rate(7)


def test_us915_sub_band_channel_masks() -> None:
    assert us915.sub_band_channels(2) == (*range(8, 16), 65)
    assert us915.sub_band_link_adr_masks(2) == ((7, 0x0002), (0, 0xFF00))
    assert us915.sub_band_link_adr_masks(8) == ((7, 0x0080), (3, 0xFF00))
    with pytest.raises(EncodeError):
        us915.sub_band_channels(9)


# Reference lorawan.md §4 (formula of AN1200.13, CR 4/5, preamble 8, explicit header, CRC on).
@pytest.mark.parametrize(
    ("phy_len", "sf7", "sf9", "sf12"),
    [
        (10, 41.2, 144.4, 991.2),
        (20, 56.6, 185.3, 1318.9),
        (51, 102.7, 328.7, 2465.8),
        (23, 61.7, 205.8, 1482.8),
        (33, 71.9, 246.8, 1810.4),
        (64, 118.0, 390.1, 2793.5),
    ],
)
def test_airtime_reference_table(phy_len: int, sf7: float, sf9: float, sf12: float) -> None:
    got = [round(time_on_air_s(EU868, dr, phy_len) * 1000, 1) for dr in (5, 3, 0)]
    assert got == [sf7, sf9, sf12]


def test_airtime_downlink_has_no_crc() -> None:
    assert round(time_on_air_s(EU868, 5, 17, uplink=False) * 1000, 1) == 46.3
    assert round(time_on_air_s(EU868, 0, 17, uplink=False) * 1000, 1) == 1155.1


def test_airtime_semtech_calculator_values() -> None:
    """micropython-lib ``lora/tests/test_time_on_air.py`` (Semtech calculator figures)."""
    assert lora_time_on_air_s(1, spreading_factor=8, bandwidth_hz=125_000, coding_rate=2) == (
        pytest.approx(0.053760)
    )
    assert lora_time_on_air_s(1, spreading_factor=12, bandwidth_hz=500_000) == pytest.approx(
        0.206848
    )
    assert lora_time_on_air_s(
        64, spreading_factor=12, bandwidth_hz=500_000, preamble_symbols=12
    ) == pytest.approx(0.649216)


def test_low_data_rate_optimisation_is_automatic_for_sf11_sf12_at_125k() -> None:
    for sf in (11, 12):
        auto = lora_time_on_air_s(51, spreading_factor=sf, bandwidth_hz=125_000)
        on = lora_time_on_air_s(
            51, spreading_factor=sf, bandwidth_hz=125_000, low_data_rate_optimize=True
        )
        off = lora_time_on_air_s(
            51, spreading_factor=sf, bandwidth_hz=125_000, low_data_rate_optimize=False
        )
        assert auto == on != off
    sf10 = lora_time_on_air_s(51, spreading_factor=10, bandwidth_hz=125_000)
    assert sf10 == lora_time_on_air_s(
        51, spreading_factor=10, bandwidth_hz=125_000, low_data_rate_optimize=False
    )


def test_airtime_fsk_and_errors() -> None:
    assert time_on_air_s(EU868, 7, 20) == pytest.approx((5 + 3 + 1 + 20 + 2) * 8 / 50000)
    with pytest.raises(EncodeError, match="LR-FHSS"):
        time_on_air_s(EU868, 8, 20)
    with pytest.raises(EncodeError):
        lora_time_on_air_s(256, spreading_factor=7, bandwidth_hz=125_000)
