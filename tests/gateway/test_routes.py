"""Collection routes (gateway/routes.py, gateway/roadgraph.py): shapes, constraints, road graph
distances, GPX, and one clear error for each kind of bad input. No I/O: pure planner calls."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import random
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest

from gateway.config import BinsConfig, RoutesConfig
from gateway.errors import RouteError
from gateway.roadgraph import build_road_graph, great_circle_m, load_road_graph
from gateway.routes import Stop, plan_routes, route_gpx, route_stops
from gateway.rules.bins import apply_bin_status
from gateway.store.base import Device

DEPOT = (56.1500, 10.2000)
STOP_KEYS = {"dev_eui", "name", "latitude", "longitude", "fill_percent", "arrival_s"}


def _report(device: Device, fields: dict[str, Any], bins: BinsConfig, at: float) -> None:
    """A bin's status through its rule, and the rule's twin change made as the service does."""
    apply_bin_status(device, fields, bins, at).twin.apply(device)


def cfg(**kw: Any) -> RoutesConfig:
    base: dict[str, Any] = {"depot_latitude": DEPOT[0], "depot_longitude": DEPOT[1]}
    base.update(kw)
    return RoutesConfig(**base)


def stops_around(n: int, seed: int = 3, spread: float = 0.01, fill: float = 90.0) -> list[Stop]:
    rng = random.Random(seed)
    return [
        Stop(
            dev_eui=f"02c17a0b{i:08x}",
            name=f"bin-{i}",
            latitude=DEPOT[0] + rng.uniform(-spread, spread),
            longitude=DEPOT[1] + rng.uniform(-spread, spread),
            fill_percent=fill,
            load=math.ceil(fill),
        )
        for i in range(n)
    ]


def visited(plan: dict[str, Any]) -> list[str]:
    return [s["dev_eui"] for r in plan["routes"] for s in r["stops"]]


def check_shape(plan: dict[str, Any], stops: list[Stop], config: RoutesConfig) -> None:
    assert set(plan) == {"routes", "unassigned", "distances"}
    seen = visited(plan) + [u["dev_eui"] for u in plan["unassigned"]]
    assert sorted(seen) == sorted(s.dev_eui for s in stops)  # each bin exactly once
    for route in plan["routes"]:
        assert set(route) == {"truck", "stops", "km", "duration_s", "geometry"}
        assert 1 <= route["truck"] <= config.trucks
        assert all(set(s) == STOP_KEYS for s in route["stops"])
        arrivals = [s["arrival_s"] for s in route["stops"]]
        assert arrivals == sorted(arrivals) and arrivals[0] > 0
        assert route["duration_s"] >= arrivals[-1] + config.service_time_s
        line = route["geometry"]
        assert line["type"] == "LineString"
        depot = [round(DEPOT[1], 6), round(DEPOT[0], 6)]
        if plan["distances"] == "great_circle":
            assert line["coordinates"][0] == depot and line["coordinates"][-1] == depot
            # km is the detour factor times the great-circle legs of the stop order
            points = [DEPOT] + [(s["latitude"], s["longitude"]) for s in route["stops"]] + [DEPOT]
            legs = sum(
                great_circle_m(a[0], a[1], b[0], b[1]) for a, b in itertools.pairwise(points)
            )
            assert route["km"] == pytest.approx(legs * config.detour_factor / 1000, abs=5e-4)


def test_one_truck_visits_every_bin_in_a_closed_tour() -> None:
    stops = stops_around(12)
    config = cfg(trucks=1)
    plan = plan_routes(stops, config)
    check_shape(plan, stops, config)
    assert plan["distances"] == "great_circle" and plan["unassigned"] == []
    assert len(plan["routes"]) == 1 and len(plan["routes"][0]["stops"]) == 12


def test_capacity_splits_the_round_over_trucks_and_leaves_the_rest_unassigned() -> None:
    stops = stops_around(7)  # 90 % each: a truck of 2 bins takes two of them
    config = cfg(trucks=3, capacity_bins=2.0)
    plan = plan_routes(stops, config)
    check_shape(plan, stops, config)
    assert all(len(r["stops"]) <= 2 for r in plan["routes"])
    assert len(visited(plan)) == 6 and len(plan["unassigned"]) == 1
    assert "capacity_bins" in plan["unassigned"][0]["reason"]


def test_time_windows_and_service_time_are_kept() -> None:
    stops = stops_around(10)
    market = [dataclasses.replace(s, group="market") for s in stops[:3]]
    stops = market + stops[3:]
    config = cfg(trucks=1, service_time_s=300, time_windows={"market": [3000, 4000]})
    plan = plan_routes(stops, config)
    check_shape(plan, stops, config)
    route = plan["routes"][0]["stops"]
    for stop in route:
        if stop["dev_eui"] in {s.dev_eui for s in market}:
            assert 3000 <= stop["arrival_s"] <= 4000
    gaps = [b["arrival_s"] - a["arrival_s"] for a, b in itertools.pairwise(route)]
    assert min(gaps) >= 300  # each stop's service is done before the truck arrives at the next


def test_a_shift_too_short_for_all_bins_leaves_some_unassigned() -> None:
    stops = stops_around(10)
    config = cfg(trucks=1, service_time_s=600, shift_s=3600)
    plan = plan_routes(stops, config)
    check_shape(plan, stops, config)
    assert plan["unassigned"] and plan["routes"][0]["duration_s"] <= 3600


def test_large_rounds_are_planned_in_sweep_sectors_one_per_truck() -> None:
    stops = stops_around(90, spread=0.02)
    config = cfg(trucks=3, chunk_jobs=20, capacity_bins=100, shift_s=86_400)
    plan = plan_routes(stops, config)
    check_shape(plan, stops, config)
    assert plan["unassigned"] == [] and len(plan["routes"]) == 3
    assert sorted(len(r["stops"]) for r in plan["routes"]) == [30, 30, 30]


def test_no_bins_is_an_empty_plan() -> None:
    assert plan_routes([], cfg()) == {"routes": [], "unassigned": [], "distances": "great_circle"}


# --- road graph ---------------------------------------------------------------------------------


def grid(n: int = 4, step: float = 0.002, gap: bool = False) -> dict[str, Any]:
    """Streets on an n x n grid around the depot, as GeoJSON LineStrings (lon, lat)."""
    lat0, lon0 = DEPOT[0] - step, DEPOT[1] - step
    features = []
    for i in range(n):
        lat = lat0 + i * step
        row = [[lon0 + j * step, lat] for j in range(n)]
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": row}})
        lon = lon0 + i * step
        col = [[lon, lat0 + j * step] for j in range(n)]
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": col}})
    if gap:  # an island street far away, touching nothing
        far = [[lon0 + 0.1, lat0 + 0.1], [lon0 + 0.101, lat0 + 0.1]]
        features.append({"type": "Feature", "geometry": {"type": "LineString", "coordinates": far}})
    return {"type": "FeatureCollection", "features": features}


def test_road_distances_follow_the_streets(tmp_path: Path) -> None:
    path = tmp_path / "streets.geojson"
    path.write_text(json.dumps(grid()))
    road = load_road_graph(str(path))
    step = 0.002
    # the depot sits on a junction; one bin across a block diagonally: road = two block sides
    corner = Stop("02c17a0b00000001", "corner", DEPOT[0] + step, DEPOT[1] + step, 95.0, 95)
    config = cfg(trucks=1)
    plan = plan_routes([corner], config, road_graph=road)
    assert plan["distances"] == "road_graph"
    check_shape(plan, [corner], config)
    sides = great_circle_m(*DEPOT, DEPOT[0] + step, DEPOT[1]) + great_circle_m(
        *DEPOT, DEPOT[0], DEPOT[1] + step
    )
    assert plan["routes"][0]["km"] == pytest.approx(2 * sides / 1000, rel=1e-3)
    coords = plan["routes"][0]["geometry"]["coordinates"]
    assert len(coords) == 5  # depot, the turning corner, the bin, a corner, depot
    assert coords[0] == coords[-1]


def test_bins_between_junctions_are_snapped_onto_their_street() -> None:
    road = build_road_graph(grid(), source="grid")
    stops = stops_around(15, spread=0.0018)
    config = cfg(trucks=2, max_snap_m=200)
    plan = plan_routes(stops, config, road_graph=road)
    check_shape(plan, stops, config)
    straight = plan_routes(stops, cfg(trucks=2, detour_factor=1.0))
    assert sum(r["km"] for r in plan["routes"]) >= 0.99 * sum(r["km"] for r in straight["routes"])


# --- bad input: one clear error naming what is wrong --------------------------------------------


def test_a_road_graph_in_two_pieces_is_refused() -> None:
    road = build_road_graph(grid(gap=True), source="streets.geojson")
    with pytest.raises(RouteError, match=r"streets\.geojson is not connected: 2 separate pieces"):
        plan_routes(stops_around(3, spread=0.0015), cfg(), road_graph=road)


def test_a_bin_far_from_any_road_is_named() -> None:
    road = build_road_graph(grid(), source="grid")
    far = Stop("02c17a0b000000ff", "lonely", DEPOT[0] + 0.05, DEPOT[1], 90.0, 90)
    with pytest.raises(RouteError, match=r"bin 02c17a0b000000ff \(lonely\).* m from the nearest"):
        plan_routes([*stops_around(2, spread=0.0015), far], cfg(), road_graph=road)


def test_a_depot_outside_the_map_is_refused() -> None:
    road = build_road_graph(grid(), source="grid")
    config = cfg(depot_latitude=DEPOT[0] + 0.2)
    with pytest.raises(RouteError, match=r"depot .* from the nearest street .*outside the map"):
        plan_routes(stops_around(2, spread=0.0015), config, road_graph=road)
    with pytest.raises(RouteError, match="outside the map of this city"):
        plan_routes(stops_around(2), cfg(depot_latitude=50.0))
    with pytest.raises(RouteError, match="are not set"):
        plan_routes(stops_around(2), cfg(depot_latitude=0.0, depot_longitude=0.0))


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        ({"trucks": 0}, r"routes.trucks = 0: no truck"),
        ({"capacity_bins": 0.5}, r"routes.capacity_bins = 0.5 is smaller than one bin"),
        ({"time_windows": {"market": [50, 10]}}, r"routes.time_windows.market"),
    ],
)
def test_bad_route_config_is_one_error(kw: dict[str, Any], words: str) -> None:
    with pytest.raises(RouteError, match=words):
        plan_routes(stops_around(3), cfg(**kw))


def test_a_file_that_is_not_geojson_is_named(tmp_path: Path) -> None:
    path = tmp_path / "streets.geojson"
    path.write_text("{not json")
    with pytest.raises(RouteError, match=r"streets\.geojson is not GeoJSON"):
        load_road_graph(str(path))
    with pytest.raises(RouteError, match="cannot read"):
        load_road_graph(str(tmp_path / "missing.geojson"))
    with pytest.raises(RouteError, match="no street lines"):
        build_road_graph({"type": "FeatureCollection", "features": []}, source="empty")


# --- which bins, and GPX ------------------------------------------------------------------------


def test_bins_forecast_full_before_the_next_round_are_collected_now() -> None:
    bins = BinsConfig()
    now = 1_772_446_542.0
    filling = Device(
        "02c17a0b00000001", kind="bin", name="filling", latitude=56.151, longitude=10.2
    )
    slow = Device("02c17a0b00000002", kind="bin", name="slow", latitude=56.152, longitude=10.2)
    unplaced = Device("02c17a0b00000003", kind="bin", name="unplaced")
    for hour in range(4):  # 50 -> 68 %: 6 %/h, reaches 80 % within 3 h
        _report(filling, {"fill_percent": 50 + 6 * hour}, bins, now + 3600 * hour)
        _report(slow, {"fill_percent": 10 + hour // 3}, bins, now + 3600 * hour)
        _report(unplaced, {"fill_percent": 95}, bins, now + 3600 * hour)
    later = now + 3 * 3600
    stops, unrouted = route_stops([filling, slow, unplaced], bins, cfg(next_round_h=24), later)
    assert [s.dev_eui for s in stops] == [filling.dev_eui]
    # planned for what it will hold when the truck comes: 6 %/h refills it within the round, so
    # it goes late and 68 % + 6 %/h to the end of the 8 h shift, at most one bin, not 68 %
    assert stops[0].load == 100
    assert unrouted == [{"dev_eui": unplaced.dev_eui, "name": "unplaced", "reason": "no position"}]
    stops, _ = route_stops([filling, slow], bins, cfg(next_round_h=1), later)
    assert stops == []  # not full within the hour


def test_load_is_the_forecast_fill_and_bins_that_refill_within_a_round_go_late() -> None:
    bins = BinsConfig()
    now = 1_772_446_542.0
    steady = Device("02c17a0b00000011", kind="bin", name="steady", latitude=56.151, longitude=10.2)
    fast = Device("02c17a0b00000012", kind="bin", name="fast", latitude=56.153, longitude=10.2)
    windowed = Device(
        "02c17a0b00000013", kind="bin", name="windowed", latitude=56.152, longitude=10.2
    )
    windowed.group = "market"
    for hour in range(4):
        _report(steady, {"fill_percent": 70 + hour}, bins, now + 3600 * hour)  # 1 %/h
        _report(fast, {"fill_percent": 40 + 5 * hour}, bins, now + 3600 * hour)
        _report(windowed, {"fill_percent": 40 + 5 * hour}, bins, now + 3600 * hour)
    later = now + 3 * 3600
    config = cfg(next_round_h=24, shift_s=8 * 3600.0, time_windows={"market": [0, 3600]})
    stops, _ = route_stops([steady, fast, windowed], bins, config, later)
    by_name = {s.name: s for s in stops}
    assert by_name["steady"].load == 73 + 4  # 73 % now, 1 %/h until the middle of the shift
    assert not by_name["steady"].group  # 1 %/h x 24 h < 80 %: lasts a round when emptied
    assert by_name["fast"].load == 55 + 5 * 8  # late: reached by the end of the shift
    assert by_name["windowed"].load == 55 + 5 * 1  # by the end of its group's window (1 h)
    # 5 %/h refills to 80 % within the 24 h to the next round even when emptied now: the later
    # half of the shift, unless its group has a window of its own
    assert by_name["fast"].group not in ("", "market")
    assert by_name["windowed"].group == "market"
    plan = plan_routes(stops, config)
    arrival = {s["name"]: s["arrival_s"] for r in plan["routes"] for s in r["stops"]}
    assert 4 * 3600 <= arrival["fast"] <= 8 * 3600
    assert arrival["windowed"] <= 3600
    assert plan["unassigned"] == []


def test_gpx_has_every_stop_as_waypoint_route_point_and_the_track() -> None:
    stops = stops_around(8)
    plan = plan_routes(stops, cfg(trucks=2, capacity_bins=5))
    root = ET.fromstring(route_gpx(plan))
    ns = {"g": "http://www.topografix.com/GPX/1/1"}
    assert root.tag == "{http://www.topografix.com/GPX/1/1}gpx" and root.get("version") == "1.1"
    assert len(root.findall("g:wpt", ns)) == 8
    routes = root.findall("g:rte", ns)
    assert len(routes) == len(plan["routes"])
    for rte, route in zip(routes, plan["routes"], strict=True):
        points = rte.findall("g:rtept", ns)
        assert [float(p.get("lat", "nan")) for p in points] == [
            pytest.approx(s["latitude"], abs=1e-6) for s in route["stops"]
        ]
    tracks = root.findall("g:trk", ns)
    assert [len(t.findall("g:trkseg/g:trkpt", ns)) for t in tracks] == [
        len(r["geometry"]["coordinates"]) for r in plan["routes"]
    ]
