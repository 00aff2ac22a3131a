"""The firmware's hand-checked region tables equal protocol/lorawan/region (RP002-1.0.4).

The firmware cannot import the protocol package (construct, dataclasses), so its tables are
written out by hand in firmware/lib/lorawan/eu868.py and us915.py; this test dumps them under the
MicroPython unix port and compares every value with the CPython definitions.
"""

from __future__ import annotations

from typing import Any

import pytest

from protocol.lorawan.region import EU868, US915, Region
from protocol.lorawan.region.base import Modulation
from tests.helpers import procs
from tests.helpers.firmware import HARNESS


@pytest.fixture(scope="module")
def tables(micropython: str) -> dict[str, Any]:
    out = procs.run_micropython_json(HARNESS / "region_dump.py", path=[HARNESS])
    assert isinstance(out, dict)
    return out


@pytest.mark.micropython
@pytest.mark.parametrize("region", [EU868, US915], ids=lambda r: r.name)
def test_data_rates_and_payload_sizes(tables: dict[str, Any], region: Region) -> None:
    fw = tables[region.name]
    for rate in region.data_rates:
        if rate.index >= len(fw["dr_table"]):
            continue
        sf, bw_khz = fw["dr_table"][rate.index]
        if rate.modulation == Modulation.LORA:
            assert (sf, bw_khz * 1000) == (rate.spreading_factor, rate.bandwidth_hz), rate
            assert fw["max_m"][rate.index] == rate.max_mac_payload, rate
        else:
            assert (sf, bw_khz) == (0, 0), f"DR{rate.index} is not LoRa: the radios cannot use it"
    lora = {r.index for r in region.data_rates if r.modulation == Modulation.LORA}
    assert {i for i, (sf, _) in enumerate(fw["dr_table"]) if sf} == lora


@pytest.mark.micropython
@pytest.mark.parametrize("region", [EU868, US915], ids=lambda r: r.name)
def test_channels_rx_windows_and_power(tables: dict[str, Any], region: Region) -> None:
    fw = tables[region.name]
    lora_max = max(
        r.index for r in region.data_rates if r.modulation == Modulation.LORA and r.uplink
    )
    expected = [
        [c.frequency_hz, c.min_dr, min(c.max_dr, lora_max)] for c in region.default_channels
    ]
    assert fw["channels"] == expected
    assert fw["max_channels"] == region.max_channels
    assert fw["rx2"] == [region.rx2_frequency_hz, region.rx2_data_rate]
    for dr, row in fw["rx1"]:
        assert row == [region.rx1_data_rate(dr, off) for off in range(len(row))], dr
        assert len(row) == len(region.rx1_dr_table[dr])
    assert fw["tx_power_dbm"] == [
        region.tx_power_dbm(i) for i in range(len(region.tx_power_offsets_db))
    ]
    assert set(fw["join_drs"]) == set(region.join_data_rates)
    assert fw["cflist_type"] == region.cflist_type


@pytest.mark.micropython
def test_eu868_duty_cycle_sub_bands(tables: dict[str, Any]) -> None:
    bands = [[b.low_hz, b.high_hz, round(1 / b.duty_cycle)] for b in EU868.sub_bands]
    assert tables["EU868"]["bands"] == bands
    assert tables["US915"]["bands"] == []
