"""The bin node in virtual time (issue 5 "Tests"): reports on schedule and on change; fire (both
triggers), tilt and pickup alarms once; a noisy sensor gives a stable fill; config downlinks are
applied and acknowledged with the new config version."""

from __future__ import annotations

import itertools
from typing import Any

from protocol import codec
from tests.firmware_apps.conftest import run_scenario

HOUR = 3_600_000


def ups(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [u for u in result["uplinks"] if u["name"] == name]


def alarms(result: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [u for u in ups(result, "bin_alarm") if u["fields"]["alarm"] == kind]


def test_every_uplink_decodes_the_same_with_the_cpython_codec(impl: str) -> None:
    for name in ("bin_fill", "bin_config", "bin_fire_threshold"):
        for u in run_scenario(impl, name)["uplinks"]:
            decoded = codec.decode(u["fport"], bytes.fromhex(u["hex"]), "up")
            assert decoded.message == u["name"]
            assert decoded.fields == u["fields"]


def test_bin_status_goes_in_its_compact_form_and_fits_us915_dr0(impl: str) -> None:
    """bin_status leaves the node as the compact form (fPort 12, protocol version 2): no status of
    a day with fire, tilt and pickups is longer than 11 bytes, the US915 DR0 limit (issue 17)."""
    for name in ("bin_fill", "bin_fire_threshold", "bin_tilt", "bin_pickup"):
        statuses = ups(run_scenario(impl, name), "bin_status")
        assert statuses
        assert {s["fport"] for s in statuses} == {12}
        assert max(len(s["hex"]) // 2 for s in statuses) <= 11


def test_boot_joins_and_sends_device_info_first(impl: str) -> None:
    r = run_scenario(impl, "bin_fill")
    first = r["uplinks"][0]
    assert first["name"] == "device_info"
    assert first["fields"]["kind"] == "bin"
    assert first["fields"]["reset_reason"] == "power_on"
    assert r["joins"] == 1


def test_fills_over_days_reports_on_schedule_and_on_change(impl: str) -> None:
    r = run_scenario(impl, "bin_fill")
    statuses = ups(r, "bin_status")
    assert len(statuses) >= 18
    early = 0
    for prev, cur in itertools.pairwise(statuses):
        gap = cur["t"] - prev["t"]
        assert gap <= 6 * HOUR + 60_000, "a status is never later than report_interval_s"
        if gap < 6 * HOUR - 60_000:
            early += 1
            moved = abs(cur["fields"]["fill_percent"] - prev["fields"]["fill_percent"])
            crossed = (prev["fields"]["fill_percent"] < 80) != (cur["fields"]["fill_percent"] < 80)
            assert moved >= 10 or crossed or cur["fields"]["pickup_count"], (prev, cur)
    assert early >= 10, "fill changes of 10 % and more go out before the interval"
    # the bin is emptied twice: two pickups, each reported once and counted in the next status
    pickups = alarms(r, "pickup")
    assert len(pickups) == 2
    assert all(p["confirmed"] and p["fields"]["value"] >= 80 for p in pickups)
    assert sum(s["fields"]["pickup_count"] for s in statuses) == 2
    # the node slept through the whole run, waking once per measurement
    assert r["sleeps"] >= 72
    assert r["slept_ms"] >= 71 * HOUR


def test_fire_over_threshold_raises_one_confirmed_alarm_and_clears(impl: str) -> None:
    r = run_scenario(impl, "bin_fire_threshold")
    fires = alarms(r, "fire")
    assert len(fires) == 1
    assert fires[0]["confirmed"]
    assert fires[0]["fields"]["value"] == 75
    assert 3 * HOUR <= fires[0]["t"] <= 3 * HOUR + 5 * 60_000
    during = [s for s in ups(r, "bin_status") if 3 * HOUR < s["t"] < 6 * HOUR]
    assert during and all(s["fields"]["fire"] for s in during)
    after = [s for s in ups(r, "bin_status") if s["t"] > 6 * HOUR + 5 * 60_000]
    assert after and not after[-1]["fields"]["fire"]


def test_fire_by_rate_of_rise_below_the_threshold(impl: str) -> None:
    r = run_scenario(impl, "bin_fire_rise")
    fires = alarms(r, "fire")
    assert len(fires) == 1
    assert fires[0]["fields"]["value"] < 90  # the threshold was 90 °C: the rate did it
    assert r["heat_start"] <= fires[0]["t"] <= r["heat_start"] + 5 * 60_000


def test_tilt_raises_once_per_fall_and_rearms(impl: str) -> None:
    r = run_scenario(impl, "bin_tilt")
    tilts = alarms(r, "tilt")
    assert [t["fields"]["value"] for t in tilts] == [90, 80]
    assert all(t["confirmed"] for t in tilts)
    assert 2 * HOUR <= tilts[0]["t"] <= 2 * HOUR + 5 * 60_000
    lying = [s for s in ups(r, "bin_status") if tilts[0]["t"] < s["t"] < 6 * HOUR]
    assert lying and all(s["fields"]["tilt"] for s in lying)


def test_pickup_is_a_sharp_fill_drop(impl: str) -> None:
    r = run_scenario(impl, "bin_pickup")
    pickups = alarms(r, "pickup")
    assert len(pickups) == 1
    assert pickups[0]["fields"]["value"] == 81
    assert pickups[0]["fields"]["fill_percent"] == 4
    after = [s for s in ups(r, "bin_status") if s["t"] > pickups[0]["t"]]
    assert after[0]["fields"]["pickup_count"] == 1
    assert after[0]["fields"]["fill_percent"] == 4
    assert all(s["fields"]["pickup_count"] == 0 for s in after[1:])
    assert not alarms(r, "sensor_fault")


def test_noisy_sensor_with_outliers_gives_a_stable_fill(impl: str) -> None:
    r = run_scenario(impl, "bin_noisy")
    statuses = ups(r, "bin_status")
    assert len(statuses) >= 24
    assert {s["fields"]["fill_percent"] for s in statuses} == {50}
    assert not any(s["fields"]["sensor_fault"] for s in statuses)
    assert not ups(r, "bin_alarm")


def test_sensor_fault_is_reported_once(impl: str) -> None:
    r = run_scenario(impl, "bin_sensor_fault")
    faults = alarms(r, "sensor_fault")
    assert len(faults) == 1
    assert faults[0]["confirmed"]
    later = [s for s in ups(r, "bin_status") if s["t"] > faults[0]["t"]]
    assert later and all(s["fields"]["sensor_fault"] for s in later)
    assert all(s["fields"]["fill_percent"] == 30 for s in later)  # last good fill is kept


def test_config_downlink_changes_height_and_thresholds_and_is_acknowledged(impl: str) -> None:
    r = run_scenario(impl, "bin_config")
    results = {u["fields"]["command_id"]: u["fields"] for u in ups(r, "command_result")}
    assert results[42] == {"command_id": 42, "outcome": "applied", "config_version": 7}
    assert results[43]["outcome"] == "unsupported"  # a lamp command on a bin
    assert results[44]["outcome"] == "applied"
    ack_t = next(u["t"] for u in ups(r, "command_result") if u["fields"]["command_id"] == 42)
    later = [s for s in ups(r, "bin_status") if s["t"] > ack_t]
    assert later and all(s["fields"]["config_version"] == 7 for s in later)
    # 80 cm from the sensor: 50 % of 100 cm + 30 cm offset before; of 200 cm, no offset after
    assert later[0]["fields"]["fill_percent"] == 60
    fires = alarms(r, "fire")
    assert len(fires) == 1 and fires[0]["fields"]["value"] == 55  # the new 50 °C threshold
    # reports follow the new 30 min interval
    steady = [s["t"] for s in later if s["t"] < 4 * HOUR]
    assert any(b - a <= 31 * 60_000 for a, b in itertools.pairwise(steady))
    # status_request answers with a status right after its result
    i = next(
        i
        for i, u in enumerate(r["uplinks"])
        if u["name"] == "command_result" and u["fields"]["command_id"] == 44
    )
    assert r["uplinks"][i + 1]["name"] == "bin_status"
    assert r["nvs_writes"] >= 1  # the new config is in NVS, not only in RAM


def test_reboot_answers_then_restarts_and_says_why(impl: str) -> None:
    r = run_scenario(impl, "bin_reboot")
    names = [u["name"] for u in r["uplinks"]]
    i = names.index("command_result")
    assert r["uplinks"][i]["fields"]["command_id"] == 9
    assert names[i + 1] == "device_info"
    assert r["uplinks"][i + 1]["fields"]["reset_reason"] == "software"
    assert r["joins"] == 2 and r["resets"] == 1


def test_every_range_sensor_gives_the_same_fill(impl: str) -> None:
    r = run_scenario(impl, "bin_range_sensors")
    assert r == {k: [40, 40, 40] for k in ("jsn-sr04t", "a02yyuw", "vl53l1x")}


def test_power_loss_keeps_the_config_in_nvs(impl: str) -> None:
    r = run_scenario(impl, "bin_power_loss")
    after = [u for u in r["uplinks"] if u["t"] > r["cut"]]
    assert after[0]["name"] == "device_info"
    assert after[0]["fields"]["reset_reason"] == "power_on"
    assert after[0]["fields"]["config_version"] == 9  # from NVS, not RTC
    statuses = [u for u in after if u["name"] == "bin_status"]
    assert statuses and all(s["fields"]["config_version"] == 9 for s in statuses)
    assert all(s["fields"]["fill_percent"] == 75 for s in statuses)  # the 200 cm height held
    assert r["joins"] == 2  # a cold boot joins again


def test_garbage_downlinks_are_counted_and_the_node_goes_on(impl: str) -> None:
    r = run_scenario(impl, "bin_hostile")
    assert r["bad"] == 7  # every undecodable one; the uplink message sent down decodes
    results = ups(r, "command_result")
    assert [x["fields"]["outcome"] for x in results] == ["unsupported"]
    statuses = ups(r, "bin_status")
    assert statuses[-1]["t"] > 9 * HOUR  # still reporting at the end
