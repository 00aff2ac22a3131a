"""The lamp node in virtual time (issue 5 "Tests"): base level on an empty road, presence boost
and hold, profile steps around a computed sunset, override expiry, lamp failure and day burner
from the meter, and everything working with no network."""

from __future__ import annotations

import itertools
from typing import Any

from tests.firmware_apps.conftest import run_scenario
from tools.sim.world import sun_times

MIN = 60_000
CPH = (55.6761, 12.5683)


def level_at(result: dict[str, Any], t_ms: int) -> int:
    level = 0
    for t, v in result["levels"]:
        if t > t_ms:
            break
        level = v
    return int(level)


def changes_to(result: dict[str, Any], value: int) -> list[int]:
    """Times (ms) at which a fade towards ``value`` started and ended at it."""
    out = []
    levels = result["levels"]
    for i, (t, v) in enumerate(levels):
        if v == value and (i == 0 or levels[i - 1][1] != value):
            # walk back over the fade steps (monotonic run of changes within 5 s)
            j = i
            while j > 0 and t - levels[j - 1][0] <= 5_000:
                j -= 1
            out.append(int(levels[j][0]))
    return out


def ups(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [u for u in result["uplinks"] if u["name"] == name]


def test_boot_announces_itself_as_a_lamp(impl: str) -> None:
    r = run_scenario(impl, "lamp_presence")
    assert r["uplinks"][0]["name"] == "device_info"
    assert r["uplinks"][0]["fields"]["kind"] == "lamp"


def test_empty_road_base_level_presence_boost_and_hold(impl: str) -> None:
    r = run_scenario(impl, "lamp_presence")
    first, last = r["marks"]["first"], r["marks"]["last"]
    assert level_at(r, first - 1) == 30  # no steps: base_level on the empty road
    assert level_at(r, first + 1_000) == 100  # boost within a second
    assert level_at(r, last + 59_000) == 100  # held for hold_time_s after the last user
    assert level_at(r, last + 60_000 + 4_000) == 30  # and back
    assert level_at(r, r["now"]) == 30
    statuses = ups(r, "lamp_status")
    assert statuses[0]["fields"]["mode"] in ("schedule", "off")


def test_presence_reports_are_rate_limited_but_count_everyone(impl: str) -> None:
    r = run_scenario(impl, "lamp_presence")
    reports = ups(r, "lamp_presence")
    assert len(reports) == 2  # five road users in 40 s: one report now, one after the limit
    assert reports[0]["fields"] == {"road_users": 1, "dim_level": 100}
    assert reports[0]["t"] - r["marks"]["first"] < 10_000
    assert reports[1]["fields"]["road_users"] == 4
    assert reports[1]["t"] - reports[0]["t"] >= 120_000


def test_profile_steps_at_computed_sunset_clock_and_sunrise(impl: str) -> None:
    r = run_scenario(impl, "lamp_profile")
    unix0 = r["unix0"]
    for night in range(2):
        day = unix0 + night * 86400
        _, sunset = sun_times(day, *CPH)
        sunrise, _ = sun_times(day + 86400, *CPH)
        ups_on = [t for t in changes_to(r, 100) if t >= night * 86_400_000 + 10 * MIN]
        on = ups_on[0] / 1000 + unix0
        assert abs(on - (sunset - 600)) < 180, "100 % ten minutes before the computed sunset"
        # 23:00 CET = 22:00 UTC, 05:00 CET = 04:00 UTC (local clock steps)
        to50 = [t / 1000 + unix0 for t in changes_to(r, 50)]
        assert any(abs(t - (day - 43200 + 22 * 3600)) < 5 for t in to50)
        to70 = [t / 1000 + unix0 for t in changes_to(r, 70)]
        assert any(abs(t - (day + 43200 + 4 * 3600)) < 5 for t in to70)
        off = [t / 1000 + unix0 for t in changes_to(r, 0) if t > 10 * MIN]
        assert any(abs(t - (sunrise + 900)) < 180 for t in off), "off 15 min after sunrise"
    result = next(u for u in ups(r, "command_result") if u["fields"]["command_id"] == 2)
    assert result["fields"] == {"command_id": 2, "outcome": "applied", "config_version": 4}
    counters = ups(r, "lamp_counters")
    assert counters
    for c in counters:  # burning hours = time with the lamp on, from the level log
        on_ms = 0
        levels = [(t, v) for t, v in r["levels"] if t <= c["t"]] + [(c["t"], 0)]
        for (t0, v), (t1, _) in itertools.pairwise(levels):
            on_ms += t1 - t0 if v > 0 else 0
        assert abs(c["fields"]["operating_hours"] - on_ms / 3_600_000) <= 1.0
    assert counters[-1]["fields"]["operating_hours"] >= 30
    assert counters[-1]["fields"]["switch_on_count"] >= 2
    assert counters[-1]["fields"]["active_energy_wh"] > 1000


def test_override_holds_for_its_duration_then_returns_to_profile(impl: str) -> None:
    r = run_scenario(impl, "lamp_override")
    t0 = r["marks"]["override"]
    assert level_at(r, t0 - 1) == 40
    assert level_at(r, t0 + 10_000) == 90  # 4 s fade, after the class C downlink arrived
    assert level_at(r, t0 + 590_000) == 90
    assert level_at(r, t0 + 610_000) == 40  # expired: back to the profile
    forever = r["marks"]["forever"]
    assert level_at(r, forever + 10_000) == 0
    assert level_at(r, r["marks"]["resume"] - 1) == 0  # duration 0: until resumed
    assert level_at(r, r["marks"]["resume"] + 10_000) == 40
    ids = [u["fields"]["command_id"] for u in ups(r, "command_result")]
    assert ids == [1, 5, 6, 7]


def test_lamp_failure_day_burner_dimming_failure_and_supply_loss(impl: str) -> None:
    r = run_scenario(impl, "lamp_failures")
    m = r["marks"]
    statuses = ups(r, "lamp_status")

    def first_with(flag: str) -> dict[str, Any]:
        return next(s for s in statuses if s["fields"][flag])

    burner = first_with("day_burner")
    assert burner["confirmed"] and burner["fields"]["relay_failure"]
    assert burner["fields"]["dim_level"] == 0
    assert 0 < burner["t"] - m["stuck"] < 5 * MIN
    lamp = first_with("lamp_failure")
    assert lamp["confirmed"] and 0 < lamp["t"] - m["broken"] < 5 * MIN
    assert lamp["fields"]["active_power_w"] == 0
    assert not any(s["fields"]["dimming_failure"] for s in statuses if s["t"] < lamp["t"])
    dimming = first_with("dimming_failure")
    assert dimming["t"] > m["broken"] + 30 * MIN
    supply = first_with("supply_loss")
    assert supply["confirmed"] and 0 < supply["t"] - m["supply"] < 5 * MIN
    assert sum(1 for s in statuses if s["t"] > m["supply"]) == 1  # raised once, not per sample


def test_keeps_running_without_network(impl: str) -> None:
    r = run_scenario(impl, "lamp_no_network")
    m = r["marks"]
    assert r["failed"] > 0  # it did try
    # the profile stepped at sunset while the network was down
    _, sunset = sun_times(r["unix0"], *CPH)
    on = [t / 1000 + r["unix0"] for t in changes_to(r, 60)]
    assert any(abs(t - sunset) < 180 for t in on)
    assert level_at(r, m["presence"] + 2_000) == 100  # presence still boosts
    assert level_at(r, m["presence"] + 4 * MIN) == 60
    assert not any(m["presence"] - 5 * 3_600_000 < u["t"] < m["back"] for u in r["uplinks"])
    back = [u for u in ups(r, "lamp_status") if u["t"] > m["back"]]
    assert back and back[0]["fields"]["road_users"] >= 1  # counted while away


def test_cold_start_without_network_lights_at_base_level(impl: str) -> None:
    r = run_scenario(impl, "lamp_cold_no_network")
    assert r["uplinks"] == []
    assert r["joins"] >= 5  # it keeps trying, backing off
    assert level_at(r, r["now"]) == 100


def test_garbage_downlinks_do_not_stop_the_lamp(impl: str) -> None:
    r = run_scenario(impl, "lamp_hostile")
    assert r["bad"] == 7
    outcomes = {u["fields"]["command_id"]: u["fields"]["outcome"] for u in ups(r, "command_result")}
    assert outcomes == {1: "unsupported", 8: "applied"}
    assert level_at(r, r["now"]) == 35  # the valid profile after the garbage still applied
