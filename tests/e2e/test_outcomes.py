"""Outcome accounting (tools/sim/outcomes.py) on a world driven by hand: every count made true by
construction (a bin filled past 100 %, a bin emptied at 30 %, a lamp held at a level)."""

from __future__ import annotations

import calendar
import itertools

import pytest

from tools.sim.outcomes import Outcomes, WorldAccounting, profile_minimum
from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE, World, distance_m, sun_times

PROFILE = {
    "boost_level": 100,
    "steps": [
        {"anchor": "sunset", "offset_min": 0, "dim_level": 50},
        {"anchor": "clock", "offset_min": 1380, "dim_level": 25},
        {"anchor": "sunrise", "offset_min": 0, "dim_level": 0},
    ],
}


def night() -> float:
    noon = float(calendar.timegm((2026, 11, 28, 12, 0, 0)))
    return sun_times(noon, AARHUS_LATITUDE, AARHUS_LONGITUDE)[1] + 3600.0  # an hour after dusk


def day() -> float:
    return float(calendar.timegm((2026, 11, 28, 11, 0, 0)))


def world_at(start: float, *, bins: int = 2, lamps: int = 6) -> World:
    world = World.aarhus(bins=bins, lamps=lamps, seed=4, start_time=start, traffic_scale=0.0)
    for sim_bin in world.bins.values():
        sim_bin.fill_rate_percent_per_h = 0.0
        sim_bin.fill_percent = 10.0
    return world


def test_profile_minimum_is_the_lowest_lit_step() -> None:
    assert profile_minimum(PROFILE) == 25
    assert profile_minimum(None) == 100
    assert profile_minimum({"base_level": 70, "steps": []}) == 70


def test_overflow_bin_hours_stops_and_half_full_pickups() -> None:
    world = world_at(day())
    accounting = WorldAccounting(world, profile=PROFILE)
    full, other = sorted(world.bins)
    world.bins[full].fill_percent = 100.0
    world.advance(world.time + 2 * 3600)
    world.empty_bin(full)  # at 100 %: a stop, not a wasted one
    world.bins[other].fill_percent = 30.0
    world.empty_bin(other)  # at 30 %: emptied under half full
    world.advance(world.time + 3600)
    waste = accounting.finish().waste
    assert waste.overflow_bin_hours == pytest.approx(2.0, abs=1e-6)
    assert waste.stops == 2 and waste.emptied_under_half == 1


def test_truck_km_are_the_distances_driven() -> None:
    world = world_at(day())
    accounting = WorldAccounting(world)
    start = world.truck.position
    route = world.dispatch_truck(sorted(world.bins))
    points = [start, *(world.position_of(eui) for eui in route)]
    expected = sum(distance_m(p, q) for p, q in itertools.pairwise(points))
    world.advance(world.time + 3 * 3600)
    assert not world.truck.active
    assert accounting.finish().waste.truck_km == pytest.approx(expected / 1000.0, rel=1e-9)


def test_fire_to_gateway_event_time() -> None:
    world = world_at(day())
    accounting = WorldAccounting(world)
    first, second = sorted(world.bins)
    world.set_fire(first)
    world.set_fire(second)
    accounting.gateway_event("bin_fire", first.upper(), world.time + 42.0)
    accounting.gateway_event("bin_fire", first, world.time + 99.0)  # a repeat is not a new fire
    outcomes = accounting.finish()
    assert outcomes.waste.fire_alarm_s == [42.0]
    assert outcomes.waste.fires_unreported == 1
    assert outcomes.as_json()["waste"]["fires"] == 2


def test_lit_ahead_and_time_below_the_profile_minimum_at_night() -> None:
    world = world_at(night())
    accounting = WorldAccounting(world, profile=PROFILE)
    street = "Søndergade"
    lamps = world.lamps_on(street)
    assert len(lamps) == 1
    lamp = lamps[0]
    lamp.dim_level = 100
    world.spawn_road_user(street, kind="cyclist", direction=1)
    world.advance(world.time + 400)  # past the lamp and off the street
    light = accounting.outcomes.light
    assert (light.users_reached, light.users_lit_ahead) == (1, 1)
    assert light.below_minimum_s == 0
    lamp.dim_level = 10  # below the profile's 25 %
    world.spawn_road_user(street, kind="pedestrian", direction=1)
    world.advance(world.time + 600)
    assert (light.users_reached, light.users_lit_ahead) == (2, 1)
    # a pedestrian at 1.4 m/s is inside an 18 m radius for 36 m / 1.4 m/s
    assert light.below_minimum_s == pytest.approx(36 / 1.4, abs=2.0)
    energy_wh = sum(item.energy_wh for item in world.lamps.values())
    assert accounting.finish().light.energy_kwh == pytest.approx(energy_wh / 1000, rel=1e-9)


def test_nothing_is_counted_for_light_by_day() -> None:
    world = world_at(day())
    accounting = WorldAccounting(world, profile=PROFILE)
    world.spawn_road_user("Søndergade", kind="car", direction=1)
    world.advance(world.time + 200)
    assert accounting.outcomes.light.users_reached == 0
    assert accounting.finish().light.lit_ahead_fraction is None


def test_text_names_every_figure() -> None:
    text = Outcomes().text()
    for words in ("truck km", "stops", "under half full", "overflow bin-hours", "kWh", "lit ahead"):
        assert words in text
