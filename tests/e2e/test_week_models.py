"""The week models behind `citypack bench city_outcomes` (tools/sim/weekwaste.py, weeklight.py),
small and fast: each count checked against what the model's own parameters make true."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tools.sim.weeklight import (
    PROFILES,
    LightWorld,
    _lamps,
    _power_w,
    _segments,
    ideal_presence_kwh,
    simulate_light,
)
from tools.sim.weekwaste import WEEK_START, WasteWorld, fixed_interval_days, simulate_waste

SMALL = WasteWorld(bins=24, warmup_days=1, radius_m=800.0)


def test_the_fixed_interval_is_what_the_rule_says() -> None:
    # every bin alike: 4 days to full on weekdays, weekend x1.3 -> 100 / (25 x 8.9/7) = 3.1 days
    uniform = dataclasses.replace(SMALL, days_to_full_sigma=0.0)
    assert fixed_interval_days(uniform, seed=1) == 3
    fast = dataclasses.replace(uniform, median_days_to_full=1.5)
    assert fixed_interval_days(fast, seed=1) == 1  # never below one day


def test_a_daily_fixed_round_empties_every_bin_every_day() -> None:
    daily = dataclasses.replace(SMALL, days_to_full_sigma=0.0, median_days_to_full=1.2)
    outcome, n_days = simulate_waste(daily, "fixed", seed=2)
    assert n_days == 1
    assert outcome.stops == 24 * 7 and outcome.truck_km > 0


def test_citypack_empties_bins_near_full_and_fewer_under_half() -> None:
    fixed, _ = simulate_waste(SMALL, "fixed", seed=3)
    per_bin: dict[str, float] = {}
    smart, _ = simulate_waste(SMALL, "citypack", seed=3, per_bin=per_bin)
    assert sum(per_bin.values()) == pytest.approx(smart.overflow_bin_hours)
    assert smart.stops > 0 and smart.truck_km > 0
    assert smart.emptied_under_half / smart.stops < fixed.emptied_under_half / fixed.stops
    with pytest.raises(ValueError, match="strategy"):
        simulate_waste(SMALL, "never", seed=3)


def test_full_on_energy_is_power_times_dark_hours_and_every_passing_is_lit() -> None:
    world = LightWorld(days=1, traffic_scale=0.05)
    results = simulate_light(world, seed=1)
    segments = _segments(PROFILES["full_on"], WEEK_START, WEEK_START + 86_400.0)
    dark_s = sum(b - a for a, b, level in segments if level == 100)
    lamps = len(_lamps(world))
    expected_kwh = lamps * _power_w(world, 100) * dark_s / 3600.0 / 1000.0
    assert results["full_on"].energy_kwh == pytest.approx(expected_kwh, rel=1e-9)
    assert 12 * 3600 < dark_s < 18 * 3600  # a December night in Aarhus
    full_on, static, citypack = (results[k] for k in ("full_on", "static", "citypack"))
    assert full_on.users_reached == static.users_reached == citypack.users_reached > 0
    assert full_on.lit_ahead_fraction is not None and full_on.lit_ahead_fraction > 0.999
    # static: half light 22:00-06:00 is below boost level, so some passings are not lit ahead
    assert static.users_lit_ahead < full_on.users_lit_ahead
    # citypack burns at least its 20 % floor all night and less than full on
    floor_kwh = lamps * _power_w(world, 20) * dark_s / 3600.0 / 1000.0
    assert floor_kwh < citypack.energy_kwh < full_on.energy_kwh


def test_bench_json_is_only_for_a_bench_with_a_json_result(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tools.cli import main

    assert main(["bench", "payload_size", "--json"]) == 2
    assert (
        "--json prints one bench that has a JSON result: city_outcomes" in capsys.readouterr().err
    )


def test_lighting_ahead_is_held_back_by_the_rx2_duty_cycle() -> None:
    # the same day of road users and detections; only the class C downlinks' data rate differs:
    # at DR0 a gateway sends ~243 overrides an hour within 10 % of the air, at DR3 ~1,749
    slow = simulate_light(LightWorld(days=1, traffic_scale=0.5), seed=1)["citypack"]
    fast = simulate_light(LightWorld(days=1, traffic_scale=0.5, rx2_dr=3), seed=1)["citypack"]
    assert slow.users_reached == fast.users_reached > 0
    assert fast.users_lit_ahead > slow.users_lit_ahead
    assert fast.energy_kwh > slow.energy_kwh  # the overrides that got through cost light


def test_an_override_that_waits_past_its_hold_is_dropped_unsent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the same day at DR0, where the duty cycle keeps overrides waiting: as the gateway plans
    # them (expiring with their hold, gateway/rules/lamps.py), and as if they never expired
    from tools.sim import weeklight

    world = LightWorld(days=1)
    expiring = simulate_light(world, seed=1)["citypack"]
    rule = weeklight.apply_lamp_presence

    def never_expiring(*args: Any, **kwargs: Any) -> Any:
        plan = rule(*args, **kwargs)
        assert all(c.expires_in_s == world.lamps.presence_duration_s for c in plan.commands)
        plan.commands[:] = [dataclasses.replace(c, expires_in_s=None) for c in plan.commands]
        return plan

    monkeypatch.setattr(weeklight, "apply_lamp_presence", never_expiring)
    kept = simulate_light(world, seed=1)["citypack"]
    assert kept.users_reached == expiring.users_reached > 0
    # the late ones lit lamps for road users who had gone on
    assert expiring.energy_kwh < kept.energy_kwh


def test_the_ideal_presence_bound_lies_between_the_floor_and_full_on() -> None:
    world = LightWorld(days=1, traffic_scale=0.2)
    reach = ideal_presence_kwh(world, seed=1, until="reach")
    leave = ideal_presence_kwh(world, seed=1, until="leave")
    segments = _segments(PROFILES["citypack"], WEEK_START, WEEK_START + 86_400.0)
    lamps = len(_lamps(world))
    floor_kwh = sum(_power_w(world, lvl) * (b - a) for a, b, lvl in segments) * lamps / 3.6e6
    assert floor_kwh < reach["citypack"] < leave["citypack"] < reach["full_on"]
    assert leave["full_on"] == reach["full_on"] and leave["static"] == reach["static"]
    # nobody on the streets: the floor alone
    empty = ideal_presence_kwh(dataclasses.replace(world, traffic_scale=1e-9), 1, until="leave")
    assert empty["citypack"] == pytest.approx(floor_kwh, rel=1e-9)
    # the real lamps hold 60 s after a road user: more than lighting them to the far edge
    assert simulate_light(world, seed=1)["citypack"].energy_kwh > leave["citypack"]
    with pytest.raises(ValueError, match="until"):
        ideal_presence_kwh(world, 1, until="never")
