"""The apps on the real LoRaWAN MAC (lorawan.mac), a sim radio and an in-process network
(tests/firmware/mpy/testnet.py): join, device_info first, periodic reports, and a class A
downlink applied and answered — the wiring firmware/main.py does on a board, minus the radio."""

from __future__ import annotations

from tests.firmware_apps.conftest import run_scenario


def test_bin_node_on_the_real_mac(impl: str) -> None:
    r = run_scenario(impl, "mac_bin")
    names = [f["name"] for f in r["frames"]]
    assert names[0] == "device_info"
    assert [f["fcnt"] for f in r["frames"]] == list(range(len(r["frames"])))
    result = next(f for f in r["frames"] if f["name"] == "command_result")
    assert result["fields"] == {"command_id": 77, "outcome": "applied", "config_version": 3}
    assert r["counts"]["bin_status"] >= 20  # a day, hourly
    assert r["sleeps"] >= 22


def test_lamp_node_on_the_real_mac(impl: str) -> None:
    r = run_scenario(impl, "mac_lamp")
    names = [f["name"] for f in r["frames"]]
    assert names[0] == "device_info"
    assert r["counts"]["lamp_status"] >= 20
    assert r["counts"]["lamp_presence"] >= 40  # a road user every 30 min
    assert r["counts"].get("lamp_counters", 0) >= 1
    # the time_sync (sent 2 min in, "it is noon") came down in the receive window of the next
    # uplink; from then on the node keeps that time on its own clock
    lag_s = 1795867200 + r["now"] // 1000 - r["unix_now"]
    assert 120 <= lag_s <= 3600
