"""What the city gets (issue 21): one simulated week of the same city under each strategy.

- Waste (:mod:`tools.sim.weekwaste`): a fixed schedule (every bin every N days, N picked as a
  city would to avoid overflow, by :func:`~tools.sim.weekwaste.fixed_interval_days`) against
  citypack (the gateway's bin rule and forecast choose the bins, its VROOM routing drives them).
- Light (:mod:`tools.sim.weeklight`): lamps full on all night, a static part-night dimming
  profile, and citypack (a low profile, the lamp's own presence boost, lighting ahead through the
  gateway's rule and class C downlinks within the duty cycle).
- Route planning speed: :func:`gateway.routes.plan_routes` for 2,000 bins and 4 trucks (great
  circle distances), best of three runs because the machine is shared.

What is simulated: a model of the week, not the firmware (a firmware-level week of a city takes
hours on two cores); the decisions are the real gateway code and the real firmware profile
evaluation. World parameters, stated in the report and chosen before any comparison, come from
the sources in tools/sim/README.md. Same seed, same city, same road users for every strategy.

``citypack bench city_outcomes --json`` prints :func:`json_result` as one object.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from typing import Any

from gateway.config import RoutesConfig
from gateway.routes import Stop, plan_routes
from tools.bench.report import Figure
from tools.sim.weeklight import PROFILES, LightWorld, simulate_light
from tools.sim.weekwaste import WasteWorld, simulate_waste
from tools.sim.world import AARHUS_LATITUDE, AARHUS_LONGITUDE

BENCH = "city_outcomes"
SEED = 1
DAYS = 7
PLAN_BINS = 2000
PLAN_TRUCKS = 4


def plan_seconds(bins: int = PLAN_BINS, trucks: int = PLAN_TRUCKS, seed: int = SEED) -> float:
    """Wall seconds to plan ``bins`` bins (3 km around the centre) for ``trucks`` trucks."""
    rng = random.Random(seed)
    kx = 111_195.0 * math.cos(math.radians(AARHUS_LATITUDE))
    stops = []
    for i in range(bins):
        r, a = 3000.0 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        stops.append(
            Stop(
                f"02c17a0b{i:08x}",
                f"bin-{i}",
                AARHUS_LATITUDE + r * math.sin(a) / 111_195.0,
                AARHUS_LONGITUDE + r * math.cos(a) / kx,
                85.0,
                85,
            )
        )
    cfg = RoutesConfig(
        depot_latitude=AARHUS_LATITUDE + 0.027,
        depot_longitude=AARHUS_LONGITUDE,
        trucks=trucks,
        capacity_bins=bins / trucks + 50,
        service_time_s=30.0,
        shift_s=12 * 3600.0,
    )
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        plan = plan_routes(stops, cfg)
        best = min(best, time.perf_counter() - started)
        routed = sum(len(r["stops"]) for r in plan["routes"]) + len(plan["unassigned"])
        if routed != bins:
            raise AssertionError(f"the plan lost bins: {routed} of {bins}")
    return best


def road_plan_seconds(bins: int = 200, seed: int = SEED) -> float:
    """Wall seconds to plan ``bins`` bins on a street grid (40 x 40 junctions, ~110 m blocks,
    ~4.4 x 4.3 km) with road-graph distances for 2 trucks (informational: no goal)."""
    from gateway.roadgraph import build_road_graph

    n, step = 40, 0.001
    lat0, lon0 = AARHUS_LATITUDE - 0.02, AARHUS_LONGITUDE - 0.035
    lines = []
    for i in range(n):
        row = [[lon0 + j * step * 1.8, lat0 + i * step] for j in range(n)]
        col = [[lon0 + i * step * 1.8, lat0 + j * step] for j in range(n)]
        lines += [{"type": "LineString", "coordinates": c} for c in (row, col)]
    road = build_road_graph(
        {
            "type": "FeatureCollection",
            "features": [{"type": "Feature", "geometry": g} for g in lines],
        },
        source="grid",
    )
    rng = random.Random(seed)
    span_lat, span_lon = (n - 1) * step, (n - 1) * step * 1.8
    stops = [
        Stop(
            f"02c17a0b{i:08x}",
            f"bin-{i}",
            lat0 + rng.uniform(0, span_lat),
            lon0 + rng.uniform(0, span_lon),
            85.0,
            85,
        )
        for i in range(bins)
    ]
    cfg = RoutesConfig(
        depot_latitude=lat0, depot_longitude=lon0, trucks=2, capacity_bins=bins, shift_s=86_400.0
    )
    started = time.perf_counter()
    plan = plan_routes(stops, cfg, road_graph=road)
    if plan["distances"] != "road_graph":
        raise AssertionError("the grid plan did not use the road graph")
    return time.perf_counter() - started


def json_result(seed: int = SEED) -> dict[str, Any]:
    """The week under every strategy, as one JSON-able object."""
    waste_world = WasteWorld()
    loads: dict[str, list[float]] = {"fixed": [], "citypack": []}
    fixed, n_days = simulate_waste(waste_world, "fixed", seed, truck_loads=loads["fixed"])
    smart, _ = simulate_waste(waste_world, "citypack", seed, truck_loads=loads["citypack"])
    light_world = LightWorld(days=DAYS)
    light = simulate_light(light_world, seed)
    full_on, static, citypack = light["full_on"], light["static"], light["citypack"]
    return {
        "seed": seed,
        "days": DAYS,
        "truck_km_ratio": round(smart.truck_km / fixed.truck_km, 4) if fixed.truck_km else None,
        "truck_km": {"fixed": round(fixed.truck_km, 2), "citypack": round(smart.truck_km, 2)},
        "overflow_bin_hours": {
            "fixed": round(fixed.overflow_bin_hours, 2),
            "citypack": round(smart.overflow_bin_hours, 2),
        },
        "stops": {"fixed": fixed.stops, "citypack": smart.stops},
        "emptied_under_half": {
            "fixed": fixed.emptied_under_half,
            "citypack": smart.emptied_under_half,
        },
        "fixed_interval_days": n_days,
        # what one truck really carried in one round, in full bins (capacity_bins in world)
        "truck_load_max_bins": {k: round(max(v, default=0.0), 1) for k, v in loads.items()},
        "energy_kwh": {
            "full_on": round(full_on.energy_kwh, 2),
            "static": round(static.energy_kwh, 2),
            "citypack": round(citypack.energy_kwh, 2),
        },
        "energy_ratio_full_on": round(citypack.energy_kwh / full_on.energy_kwh, 4),
        "energy_ratio_static": round(citypack.energy_kwh / static.energy_kwh, 4),
        "lit_ahead_fraction": citypack.lit_ahead_fraction,
        "lit_ahead_fraction_by_strategy": {
            name: outcome.lit_ahead_fraction for name, outcome in light.items()
        },
        "lamp_passings_in_the_dark": citypack.users_reached,
        "below_minimum_s": citypack.below_minimum_s,
        "route_plan_s_2000_bins_4_trucks": round(plan_seconds(seed=seed), 3),
        "route_plan_s_200_bins_road_graph": round(road_plan_seconds(seed=seed), 3),
        "world": {
            "waste": waste_world.describe(),
            "light": light_world.describe(),
            "profiles": PROFILES,
        },
    }


def run() -> list[Figure]:
    doc = json_result()
    waste = doc["world"]["waste"]
    note = (
        f"seed {doc['seed']}, {doc['days']} days, {waste['bins']} bins, {waste['trucks']} trucks "
        "(world: tools/sim/README.md, --json)"
    )
    over = doc["overflow_bin_hours"]
    return [
        Figure(BENCH, "truck km citypack / fixed", doc["truck_km_ratio"], "x", 0.6, "<=", note),
        Figure(
            BENCH,
            "overflow bin-hours citypack - fixed",
            over["citypack"] - over["fixed"],
            "bin-h",
            0.0,
            "<=",
            f"fixed {over['fixed']:g}, citypack {over['citypack']:g}; every bin every "
            f"{doc['fixed_interval_days']} day(s)",
        ),
        Figure(
            BENCH, "lamp energy citypack / full on", doc["energy_ratio_full_on"], "x", 0.4, "<="
        ),
        Figure(BENCH, "lamp energy citypack / static", doc["energy_ratio_static"], "x", 0.8, "<="),
        Figure(
            BENCH,
            "road users lit ahead (citypack)",
            100.0 * (doc["lit_ahead_fraction"] or 0.0),
            "%",
            99.0,
            ">=",
            f"{doc['lamp_passings_in_the_dark']} lamp passings in the dark",
        ),
        Figure(
            BENCH,
            "route planning, 2000 bins 4 trucks",
            doc["route_plan_s_2000_bins_4_trucks"],
            "s",
            5.0,
            "<=",
            "best of 3 (a shared machine), great-circle distances",
        ),
        Figure(
            BENCH,
            "route planning, 200 bins on a road graph",
            doc["route_plan_s_200_bins_road_graph"],
            "s",
            note="40 x 40 street grid, 2 trucks, shortest paths per stop (informational)",
        ),
        Figure(BENCH, "truck km fixed", doc["truck_km"]["fixed"], "km"),
        Figure(BENCH, "truck km citypack", doc["truck_km"]["citypack"], "km"),
        Figure(BENCH, "lamp energy full on", doc["energy_kwh"]["full_on"], "kWh"),
        Figure(BENCH, "lamp energy static", doc["energy_kwh"]["static"], "kWh"),
        Figure(BENCH, "lamp energy citypack", doc["energy_kwh"]["citypack"], "kWh"),
    ]


if __name__ == "__main__":
    json.dump(json_result(), sys.stdout, indent=2)
    print()
