"""Collection routes: today's rounds for the trucks, planned by a vehicle-routing solver (VROOM).

Which bins: :func:`gateway.rules.bins.collection_list` with the horizon ``[routes] next_round_h``,
so a bin the forecast says will be full before the next round is collected now, not only the bins
full already. What it costs: a distance matrix in metres, from the street graph of ``[routes]
road_graph`` (shortest paths over street centre lines, :mod:`gateway.roadgraph`) or else the
great-circle distance times ``detour_factor``; durations at ``speed_kmh``. The solver is VROOM
(``pyvroom``): a depot, ``trucks`` vehicles of ``capacity_bins`` (a bin's load is its fill in
percent of one bin), ``service_time_s`` per bin, a shift of ``shift_s`` and optional time windows
per bin group. Rounds larger than ``chunk_jobs`` are split first into one sweep sector per truck
around the depot and then into consecutive solves of at most ``chunk_jobs`` bins each (cluster
first, route second: Gillett & Miller, "A heuristic algorithm for the vehicle-dispatch problem",
Operations Research 22(2), 1974), because VROOM's construction grows faster than n² past a few
hundred jobs; a truck's chunks are chained, each starting where the previous one ended.

Answer (issue 21)::

    {"routes": [{"truck": 1, "stops": [{"dev_eui", "name", "latitude", "longitude",
      "fill_percent", "arrival_s"}], "km": 12.3, "duration_s": 5400,
      "geometry": {"type": "LineString", "coordinates": [[lon, lat], ...]}}],
     "unassigned": [{"dev_eui", "name", "reason"}], "distances": "road_graph" | "great_circle"}

``arrival_s`` and ``duration_s`` count from the moment the truck leaves the depot. Every problem
with the config, the road graph or a bin is one :class:`~gateway.errors.RouteError` naming it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from xml.etree import ElementTree as ET

import networkx as nx
import numpy as np
import vroom

from gateway.config import BinsConfig, RoutesConfig
from gateway.errors import RouteError
from gateway.roadgraph import EARTH_RADIUS_M, RoadGraph
from gateway.rules.bins import collection_list
from gateway.store.base import Device

__all__ = ["Stop", "plan_routes", "route_gpx", "route_stops"]

_DEPOT = "__depot__"
_MAX_DEPOT_KM = 100.0  # great-circle mode: a depot this far from every bin is not in this city


@dataclass(frozen=True, slots=True)
class Stop:
    dev_eui: str
    name: str | None
    latitude: float
    longitude: float
    fill_percent: float
    load: int  # percent of one bin the truck takes on here
    group: str | None = None


_LATE = "__late__"  # stops that refill within a round: visited in the later half of the shift


def _reached_h(window: Any, late: bool, shift_h: float) -> float:
    """Hours after the trucks leave by which a stop is expected to be reached, for its load:
    the end of its time window (its group's; the shift's end for :data:`_LATE`), else the
    middle of the shift. A bin with no window may be reached at any time in the shift, and a
    truck's load is the sum over many bins, early and late: planning every bin for the end of
    the shift overstated a round's waste by about a fifth and sent a second truck, and its two
    depot legs, where one had room (tools/sim/README.md, the week)."""
    if late:
        return shift_h
    checked = _window(window)
    if checked is not None:
        return min(shift_h, float(checked[1]) / 3600.0)
    return shift_h / 2  # none, or one plan_routes refuses (_windows)


def _window(window: Any) -> tuple[float, float] | None:
    """A group's ``[from_s, to_s]`` as it is, or None when it is not one (seconds after the
    trucks leave, from <= to)."""
    if (
        isinstance(window, list)
        and len(window) == 2
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in window)
        and 0 <= window[0] <= window[1]
    ):
        return window[0], window[1]
    return None


def route_stops(
    devices: Iterable[Device], bins: BinsConfig, cfg: RoutesConfig, now: float
) -> tuple[list[Stop], list[dict[str, Any]]]:
    """The bins to collect this round (full, or forecast full before the next round), and those
    listed that cannot be routed (no position).

    A stop's load is what the forecast says the bin will hold when the truck comes (its fill
    plus its rate until the truck is expected, :func:`_reached_h`; at most one bin), so a truck
    is planned for the waste it will carry, not for a threshold. A bin that would be full again
    before the next round even if emptied now (its rate reaches the threshold within
    ``next_round_h``) cannot be kept below it by one visit a day; it is marked for the later
    half of the shift (:data:`_LATE`), unless its group has a time window of its own: waste
    comes by day, so a late visit takes the morning's waste and leaves it the evening and the
    next morning to fill, where a visit at first light leaves it a whole day and a night
    (tools/sim/README.md, the week)."""
    by_eui = {d.dev_eui: d for d in devices}
    shift_h = cfg.shift_s / 3600.0
    stops: list[Stop] = []
    unassigned: list[dict[str, Any]] = []
    for row in collection_list(by_eui.values(), bins, now, horizon_h=cfg.next_round_h):
        if row["latitude"] is None or row["longitude"] is None:
            unassigned.append(
                {"dev_eui": row["dev_eui"], "name": row["name"], "reason": "no position"}
            )
            continue
        fill = float(row["fill_percent"])
        rate = by_eui[row["dev_eui"]].derived.get("fill_rate_percent_per_h")
        rate = float(rate) if isinstance(rate, int | float) and rate > 0 else 0.0
        refills = rate * cfg.next_round_h >= float(row["threshold_percent"])
        group = row["group"]
        window = cfg.time_windows.get(group) if group else None
        if refills and window is None:
            group = _LATE
        expected = max(fill, min(100.0, fill + rate * _reached_h(window, group == _LATE, shift_h)))
        stops.append(
            Stop(
                dev_eui=row["dev_eui"],
                name=row["name"],
                latitude=float(row["latitude"]),
                longitude=float(row["longitude"]),
                fill_percent=fill,
                load=max(1, math.ceil(expected)),
                group=group,
            )
        )
    return stops, unassigned


# --- checks -------------------------------------------------------------------------------------


def _check(stops: list[Stop], cfg: RoutesConfig) -> None:
    if cfg.trucks < 1:
        raise RouteError(
            f"routes.trucks = {cfg.trucks}: no truck to plan a route for", key="trucks"
        )
    if cfg.capacity_bins < 1:
        raise RouteError(
            f"routes.capacity_bins = {cfg.capacity_bins:g} is smaller than one bin: "
            "a truck could not empty a full bin",
            key="capacity_bins",
        )
    lat, lon = cfg.depot_latitude, cfg.depot_longitude
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise RouteError(f"routes.depot_latitude/longitude {lat}, {lon}: not a position")
    if lat == 0.0 and lon == 0.0:
        raise RouteError(
            "routes.depot_latitude/depot_longitude are not set: where do trucks start?"
        )


def _windows(stops: list[Stop], cfg: RoutesConfig) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for group, window in cfg.time_windows.items():
        checked = _window(window)
        if checked is None:
            raise RouteError(
                f"routes.time_windows.{group}: expected [from_s, to_s] seconds after the trucks "
                f"leave, from <= to, got {window!r}",
                key="time_windows",
            )
        out[group] = (int(checked[0]), int(checked[1]))
    if any(s.group == _LATE for s in stops):
        out[_LATE] = (round(cfg.shift_s / 2), round(cfg.shift_s))
    return out


# --- distances ----------------------------------------------------------------------------------


def _great_circle_matrix(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle metres between every pair, from unit vectors: the chord |p - q| comes from
    one matrix product (2 - 2 p.q), then the arc is 2 asin(chord / 2). Float64 keeps a 10 m
    distance to about a millimetre."""
    la, lo = np.radians(lat), np.radians(lon)
    unit = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=1)
    chord2: np.ndarray = 2.0 - 2.0 * (unit @ unit.T)
    np.clip(chord2, 0.0, 4.0, out=chord2)
    np.sqrt(chord2, out=chord2)
    chord2 *= 0.5
    np.arcsin(chord2, out=chord2)
    chord2 *= 2 * EARTH_RADIUS_M
    np.fill_diagonal(chord2, 0.0)
    return chord2


@dataclass(slots=True)
class _Distances:
    metres: np.ndarray  # (n+1) x (n+1), index 0 the depot
    mode: str
    graph: nx.Graph | None = None  # road mode: the street graph with the stops in it


def _road_distances(stops: list[Stop], cfg: RoutesConfig, road: RoadGraph) -> _Distances:
    road.check_connected()
    snaps = {}
    depot = road.snap(cfg.depot_latitude, cfg.depot_longitude)
    if depot.offset_m > cfg.max_snap_m:
        raise RouteError(
            f"depot {cfg.depot_latitude:.5f}, {cfg.depot_longitude:.5f} is {depot.offset_m:,.0f} m "
            f"from the nearest street of {road.source} (routes.max_snap_m = {cfg.max_snap_m:g}): "
            "outside the map",
            key="depot",
        )
    snaps[_DEPOT] = depot
    for stop in stops:
        snap = road.snap(stop.latitude, stop.longitude)
        if snap.offset_m > cfg.max_snap_m:
            raise RouteError(
                f"bin {stop.dev_eui} ({stop.name or 'no name'}) at {stop.latitude:.5f}, "
                f"{stop.longitude:.5f} is {snap.offset_m:,.0f} m from the nearest street "
                f"(routes.max_snap_m = {cfg.max_snap_m:g})",
                dev_eui=stop.dev_eui,
            )
        snaps[stop.dev_eui] = snap
    graph = road.with_stops(snaps)
    keys = [_DEPOT, *(s.dev_eui for s in stops)]
    metres = _stop_distances(graph, [f"stop:{k}" for k in keys])
    return _Distances(metres, "road_graph", graph)


def _stop_distances(graph: nx.Graph, targets: list[str]) -> np.ndarray:
    """Shortest road metres between every pair of ``targets`` (Dijkstra from each, stopping once
    every target is settled). Plain heapq over integer adjacency lists: several times faster than
    networkx's general Dijkstra, which spends its time on attribute lookups per edge."""
    index = {node: i for i, node in enumerate(graph.nodes)}
    adjacency: list[list[tuple[int, float]]] = [[] for _ in index]
    for a, b, length in graph.edges(data="length_m"):
        i, j = index[a], index[b]
        adjacency[i].append((j, float(length)))
        adjacency[j].append((i, float(length)))
    wanted = [index[t] for t in targets]
    column = {node: k for k, node in enumerate(wanted)}
    metres = np.zeros((len(wanted), len(wanted)))
    for row, source in enumerate(wanted):
        best = {source: 0.0}
        done: set[int] = set()
        left = len(column)
        heap = [(0.0, source)]
        while heap and left:
            d, node = heapq.heappop(heap)
            if node in done:
                continue
            done.add(node)
            k = column.get(node)
            if k is not None:
                metres[row, k] = d
                left -= 1
            for nxt, length in adjacency[node]:
                nd = d + length
                if nd < best.get(nxt, math.inf):
                    best[nxt] = nd
                    heapq.heappush(heap, (nd, nxt))
    return metres


def _distances(stops: list[Stop], cfg: RoutesConfig, road: RoadGraph | None) -> _Distances:
    if road is not None:
        return _road_distances(stops, cfg, road)
    lat = np.array([cfg.depot_latitude, *(s.latitude for s in stops)])
    lon = np.array([cfg.depot_longitude, *(s.longitude for s in stops)])
    metres = _great_circle_matrix(lat, lon) * cfg.detour_factor
    if stops:
        nearest_km = float(np.min(metres[0, 1:])) / cfg.detour_factor / 1000.0
        if nearest_km > _MAX_DEPOT_KM:
            raise RouteError(
                f"depot {cfg.depot_latitude:.5f}, {cfg.depot_longitude:.5f} is "
                f"{nearest_km:,.0f} km from the nearest bin: outside the map of this city",
                key="depot",
            )
    return _Distances(metres, "great_circle")


# --- solving ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Leg:
    """What one solve gave one truck: stop indices (into the matrix) with arrival times."""

    visits: list[tuple[int, int]]  # (matrix index, arrival_s)
    end_s: int  # back at the depot (or, for an open chunk, at its last stop done)
    load: int


def _solve(
    members: list[int],
    *,
    start: int,
    start_s: int,
    close: bool,
    capacity: int,
    loads: list[int],
    windows: list[tuple[int, int] | None],
    seconds: np.ndarray,
    cfg: RoutesConfig,
    vehicles: int,
    timeout_s: float,
) -> tuple[list[_Leg], list[int]]:
    """One VROOM solve over ``members`` (matrix indices) for ``vehicles`` trucks starting at
    ``start`` at ``start_s``; ``close`` sends them back to the depot (index 0)."""
    locations = sorted({0, start, *members})
    local = {m: i for i, m in enumerate(locations)}
    sub = seconds[np.ix_(locations, locations)].round().astype(np.uint32)
    problem = vroom.Input()
    problem.set_durations_matrix(profile="car", matrix_input=sub)
    shift_end = int(cfg.shift_s)
    for v in range(vehicles):
        problem.add_vehicle(
            vroom.Vehicle(
                id=v + 1,
                start=local[start],
                end=local[0] if close else None,
                capacity=[capacity],
                time_window=vroom.TimeWindow(start_s, max(start_s, shift_end)),
            )
        )
    service = round(cfg.service_time_s)
    for m in members:
        window = windows[m]
        problem.add_job(
            vroom.Job(
                id=m,
                location=local[m],
                default_service=service,
                pickup=[loads[m]],
                time_windows=[vroom.TimeWindow(*window)] if window else (),
            )
        )
    # VROOM's deeper exploration runs more construction heuristics: worth it on small rounds,
    # several times slower for little gain past about a hundred jobs (bench city_outcomes)
    level = 5 if len(members) <= 100 else 0
    solution = problem.solve(
        exploration_level=level, nb_threads=2, timeout=timedelta(seconds=timeout_s)
    ).to_dict()
    legs: list[_Leg] = []
    for route in sorted(solution.get("routes", []), key=lambda r: int(r["vehicle"])):
        # a truck early for a time window waits there: the bin is emptied at arrival + waiting
        visits = [
            (int(s["id"]), int(s["arrival"]) + int(s.get("waiting_time", 0)))
            for s in route["steps"]
            if s["type"] == "job"
        ]
        last = route["steps"][-1]
        end_s = int(last["arrival"])
        if not close:  # an open chunk ends when its last bin is done
            end_s += int(last.get("waiting_time", 0)) + int(last.get("service", 0))
        legs.append(_Leg(visits, end_s, int(route["pickup"][0]) if route.get("pickup") else 0))
    unassigned = [int(u["id"]) for u in solution.get("unassigned", [])]
    return legs, unassigned


def _sweep(members: list[int], lat: np.ndarray, lon: np.ndarray, parts: int) -> list[list[int]]:
    """Stops ordered by bearing around the depot (index 0), starting after the widest empty
    angle, cut into ``parts`` runs of equal size."""
    if not members:
        return [[] for _ in range(parts)]
    kx = math.cos(math.radians(float(lat[0])))
    angle = {m: math.atan2(float(lat[m] - lat[0]), float(lon[m] - lon[0]) * kx) for m in members}
    ordered = sorted(members, key=lambda m: (angle[m], m))
    gaps = [
        (angle[ordered[(i + 1) % len(ordered)]] - angle[ordered[i]]) % (2 * math.pi)
        for i in range(len(ordered))
    ]
    cut = (max(range(len(gaps)), key=lambda i: gaps[i]) + 1) % len(ordered)
    ordered = ordered[cut:] + ordered[:cut]
    size = math.ceil(len(ordered) / parts)
    return [ordered[i * size : (i + 1) * size] for i in range(parts)]


def _plan_indices(
    stops: list[Stop],
    dist: _Distances,
    cfg: RoutesConfig,
    windows_by_group: dict[str, tuple[int, int]],
) -> tuple[list[_Leg], list[int]]:
    n = len(stops)
    seconds = dist.metres / (cfg.speed_kmh / 3.6)
    loads = [0, *(s.load for s in stops)]
    windows: list[tuple[int, int] | None] = [None]
    windows += [windows_by_group.get(s.group or "") for s in stops]
    capacity = round(cfg.capacity_bins * 100)
    members = list(range(1, n + 1))
    if n <= cfg.chunk_jobs:
        return _solve(
            members,
            start=0,
            start_s=0,
            close=True,
            capacity=capacity,
            loads=loads,
            windows=windows,
            seconds=seconds,
            cfg=cfg,
            vehicles=cfg.trucks,
            timeout_s=cfg.solver_timeout_s,
        )
    lat = np.array([cfg.depot_latitude, *(s.latitude for s in stops)])
    lon = np.array([cfg.depot_longitude, *(s.longitude for s in stops)])
    sectors = _sweep(members, lat, lon, cfg.trucks)
    chunks_total = sum(max(1, math.ceil(len(s) / cfg.chunk_jobs)) for s in sectors)
    budget = cfg.solver_timeout_s / chunks_total
    legs: list[_Leg] = []
    unassigned: list[int] = []
    for sector in sectors:
        parts = max(1, math.ceil(len(sector) / cfg.chunk_jobs))
        chunks = _sweep(sector, lat, lon, parts) if parts > 1 else [sector]
        visits: list[tuple[int, int]] = []
        here, clock, used = 0, 0, 0
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            got, missed = _solve(
                chunk,
                start=here,
                start_s=clock,
                close=last,
                capacity=max(0, capacity - used),
                loads=loads,
                windows=windows,
                seconds=seconds,
                cfg=cfg,
                vehicles=1,
                timeout_s=budget,
            )
            unassigned += missed
            leg = got[0] if got else None
            if leg is not None and leg.visits:
                visits += leg.visits
                here, clock, used = leg.visits[-1][0], leg.end_s, used + leg.load
            elif last and visits:  # nothing more fitted: drive back from the last stop
                clock += round(float(seconds[here, 0]))
        legs.append(_Leg(visits, clock, used))
    return legs, unassigned


# --- the answer ---------------------------------------------------------------------------------


def _geometry(
    order: list[int], stops: list[Stop], dist: _Distances, cfg: RoutesConfig
) -> dict[str, Any]:
    keys = [_DEPOT, *(s.dev_eui for s in stops)]
    if dist.graph is None:
        points = [(cfg.depot_longitude, cfg.depot_latitude)]
        points += [(stops[i - 1].longitude, stops[i - 1].latitude) for i in order]
        points.append((cfg.depot_longitude, cfg.depot_latitude))
    else:
        graph = dist.graph
        points = []
        path = [0, *order, 0]
        for a, b in itertools.pairwise(path):
            nodes = nx.shortest_path(graph, f"stop:{keys[a]}", f"stop:{keys[b]}", weight="length_m")
            for node in nodes if not points else nodes[1:]:
                points.append(graph.nodes[node]["point"] if isinstance(node, str) else node)
    coordinates: list[list[float]] = []
    for x, y in points:
        point = [round(x, 6), round(y, 6)]
        if not coordinates or coordinates[-1] != point:  # a stop on a junction adds no vertex
            coordinates.append(point)
    return {"type": "LineString", "coordinates": coordinates}


def plan_routes(
    stops: list[Stop], cfg: RoutesConfig, *, road_graph: RoadGraph | None = None
) -> dict[str, Any]:
    """Plan rounds for ``stops`` (see the module docstring for the answer's shape)."""
    _check(stops, cfg)
    windows = _windows(stops, cfg)
    dist = _distances(stops, cfg, road_graph)
    legs, missed = _plan_indices(stops, dist, cfg, windows) if stops else ([], [])
    routes = []
    for truck, leg in enumerate(legs, start=1):
        if not leg.visits:
            continue
        order = [i for i, _ in leg.visits]
        path = [0, *order, 0]
        metres = sum(float(dist.metres[a, b]) for a, b in itertools.pairwise(path))
        routes.append(
            {
                "truck": truck,
                "stops": [
                    {
                        "dev_eui": stops[i - 1].dev_eui,
                        "name": stops[i - 1].name,
                        "latitude": stops[i - 1].latitude,
                        "longitude": stops[i - 1].longitude,
                        "fill_percent": stops[i - 1].fill_percent,
                        "arrival_s": arrival,
                    }
                    for i, arrival in leg.visits
                ],
                "km": round(metres / 1000.0, 3),
                "duration_s": leg.end_s,
                "geometry": _geometry(order, stops, dist, cfg),
            }
        )
    unassigned = [
        {
            "dev_eui": stops[i - 1].dev_eui,
            "name": stops[i - 1].name,
            "reason": "no truck had room or time left (routes.capacity_bins, shift_s, "
            "time_windows)",
        }
        for i in sorted(missed)
    ]
    return {"routes": routes, "unassigned": unassigned, "distances": dist.mode}


def route_gpx(plan: dict[str, Any]) -> str:
    """GPX 1.1 (topografix.com/GPX/1/1): every stop a ``wpt``, every truck a ``rte`` of its stops
    in order and a ``trk`` of its street geometry, which navigation units load as a route."""
    ns = "http://www.topografix.com/GPX/1/1"
    root = ET.Element("gpx", {"version": "1.1", "creator": "citypack", "xmlns": ns})
    for route in plan["routes"]:
        for stop in route["stops"]:
            wpt = ET.SubElement(
                root, "wpt", {"lat": f"{stop['latitude']:.6f}", "lon": f"{stop['longitude']:.6f}"}
            )
            ET.SubElement(wpt, "name").text = stop["name"] or stop["dev_eui"]
            ET.SubElement(
                wpt, "desc"
            ).text = f"truck {route['truck']}, {stop['fill_percent']:g} % full, {stop['dev_eui']}"
    for route in plan["routes"]:
        rte = ET.SubElement(root, "rte")
        ET.SubElement(rte, "name").text = f"truck {route['truck']}"
        for number, stop in enumerate(route["stops"], start=1):
            point = ET.SubElement(
                rte, "rtept", {"lat": f"{stop['latitude']:.6f}", "lon": f"{stop['longitude']:.6f}"}
            )
            ET.SubElement(point, "name").text = f"{number}. {stop['name'] or stop['dev_eui']}"
    for route in plan["routes"]:
        trk = ET.SubElement(root, "trk")
        ET.SubElement(trk, "name").text = f"truck {route['truck']} ({route['km']:g} km)"
        segment = ET.SubElement(trk, "trkseg")
        for lon, lat in route["geometry"]["coordinates"]:
            ET.SubElement(segment, "trkpt", {"lat": f"{lat:.6f}", "lon": f"{lon:.6f}"})
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
