"""Road graph for collection routes: street centre lines (GeoJSON) as a weighted networkx graph.

Input: an RFC 7946 GeoJSON ``FeatureCollection`` (or a single ``Feature``/geometry) whose
``LineString``/``MultiLineString`` geometries are street centre lines, coordinates
``[longitude, latitude]`` (RFC 7946 §3.1.1). Consecutive points become edges weighted by their
great-circle length in metres; points shared by two lines (equal to 1e-7°, about 1 cm) join the
streets, so the lines of an OpenStreetMap export that meet at a junction are connected.

A stop (a bin, the depot) is *snapped* to the nearest point of the nearest edge, which splits that
edge; a stop farther than ``max_snap_m`` from every street is refused by name, and so is a graph in
more than one piece (a truck could not drive between them). Errors are :class:`RouteError`.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from gateway.errors import RouteError

__all__ = ["EARTH_RADIUS_M", "RoadGraph", "Snap", "great_circle_m", "load_road_graph"]

EARTH_RADIUS_M = 6_371_008.8  # IUGG mean Earth radius (R1)
_ROUND = 7  # decimal places of a degree that make two line ends one junction (~1 cm)


def great_circle_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance in metres on the mean-radius sphere."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


Point = tuple[float, float]  # (longitude, latitude), GeoJSON order


@dataclass(frozen=True, slots=True)
class Snap:
    """Where a stop meets the road: on edge ``(u, v)`` at ``point``, ``offset_m`` from the stop."""

    u: Point
    v: Point
    point: Point
    offset_m: float
    t: float  # 0 at u, 1 at v


class RoadGraph:
    """An undirected street graph; nodes are ``(lon, lat)`` tuples, edge weight ``length_m``."""

    def __init__(self, graph: nx.Graph, *, source: str = "") -> None:
        if graph.number_of_edges() == 0:
            raise RouteError(f"road graph {source}: no street lines in it", path=source)
        self.graph = graph
        self.source = source
        self._edges = list(graph.edges())
        a = np.array([e[0] for e in self._edges], dtype=float)
        b = np.array([e[1] for e in self._edges], dtype=float)
        self._lat0 = float(np.mean(np.concatenate([a[:, 1], b[:, 1]])))
        self._kx = 111_195.0 * math.cos(math.radians(self._lat0))  # metres per degree lon
        self._ky = 111_195.0
        self._ax, self._ay = a[:, 0] * self._kx, a[:, 1] * self._ky
        self._bx, self._by = b[:, 0] * self._kx, b[:, 1] * self._ky

    def check_connected(self) -> None:
        if nx.is_connected(self.graph):
            return
        parts = sorted(nx.connected_components(self.graph), key=len, reverse=True)
        lon, lat = next(iter(parts[1]))
        raise RouteError(
            f"road graph {self.source} is not connected: {len(parts)} separate pieces "
            f"(the largest has {len(parts[0])} of {self.graph.number_of_nodes()} points; "
            f"another one is near {lat:.5f}, {lon:.5f}): a truck cannot drive between them",
            path=self.source,
        )

    def snap(self, lat: float, lon: float) -> Snap:
        """The nearest point on any street (local equirectangular metres; exact within a city)."""
        px, py = lon * self._kx, lat * self._ky
        dx, dy = self._bx - self._ax, self._by - self._ay
        length2 = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(length2 > 0, ((px - self._ax) * dx + (py - self._ay) * dy) / length2, 0.0)
        t = np.clip(t, 0.0, 1.0)
        qx, qy = self._ax + t * dx, self._ay + t * dy
        dist = np.hypot(px - qx, py - qy)
        i = int(np.argmin(dist))
        u, v = self._edges[i]
        point = (float(qx[i] / self._kx), float(qy[i] / self._ky))
        return Snap(u=u, v=v, point=point, offset_m=float(dist[i]), t=float(t[i]))

    def with_stops(self, snaps: dict[str, Snap]) -> nx.Graph:
        """A copy of the graph with each snapped stop as node ``"stop:<key>"`` on its edge, the
        edge split at the stop (several stops on one edge are chained in order along it)."""
        g = self.graph.copy()
        by_edge: dict[tuple[Point, Point], list[tuple[float, str, Snap]]] = {}
        for key, s in snaps.items():
            by_edge.setdefault((s.u, s.v), []).append((s.t, key, s))
        for (u, v), stops in by_edge.items():
            length = float(g.edges[u, v]["length_m"])
            stops.sort(key=lambda item: (item[0], item[1]))
            previous: Any = u
            previous_t = 0.0
            for t, key, s in stops:
                node = f"stop:{key}"
                g.add_node(node, point=s.point)
                g.add_edge(previous, node, length_m=max(0.0, (t - previous_t) * length))
                previous, previous_t = node, t
            g.add_edge(previous, v, length_m=max(0.0, (1.0 - previous_t) * length))
            if u != v:
                g.remove_edge(u, v)
        return g


def _lines(doc: Any, where: str) -> list[list[Point]]:
    if not isinstance(doc, dict):
        raise RouteError(f"road graph {where}: not a GeoJSON object", path=where)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        features = doc.get("features")
        if not isinstance(features, list):
            raise RouteError(f"road graph {where}: FeatureCollection without features", path=where)
        out: list[list[Point]] = []
        for feature in features:
            out.extend(_lines(feature, where))
        return out
    if kind == "Feature":
        geometry = doc.get("geometry")
        return [] if geometry is None else _lines(geometry, where)
    coords: Any = doc.get("coordinates")
    try:
        if kind == "LineString":
            return [[(float(c[0]), float(c[1])) for c in coords]]
        if kind == "MultiLineString":
            return [[(float(c[0]), float(c[1])) for c in line] for line in coords]
    except (TypeError, ValueError, IndexError):
        raise RouteError(f"road graph {where}: bad coordinates in a {kind}", path=where) from None
    return []  # points and polygons are not streets


def build_road_graph(doc: Any, *, source: str = "<geojson>") -> RoadGraph:
    graph = nx.Graph()
    for line in _lines(doc, source):
        points = [(round(lon, _ROUND), round(lat, _ROUND)) for lon, lat in line]
        for lon, lat in points:
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise RouteError(
                    f"road graph {source}: coordinate {lon}, {lat} is not [longitude, latitude]",
                    path=source,
                )
        for a, b in itertools.pairwise(points):
            if a == b:
                continue
            length = great_circle_m(a[1], a[0], b[1], b[0])
            if graph.has_edge(a, b):
                length = min(length, float(graph.edges[a, b]["length_m"]))
            graph.add_edge(a, b, length_m=length)
    return RoadGraph(graph, source=source)


_CACHE: dict[str, tuple[float, RoadGraph]] = {}


def load_road_graph(path: str) -> RoadGraph:
    """Read a GeoJSON street file (kept in memory until the file changes)."""
    try:
        mtime = Path(path).stat().st_mtime
    except OSError as exc:
        raise RouteError(
            f"routes.road_graph: cannot read {path}: {exc.strerror}", path=path
        ) from None
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RouteError(f"routes.road_graph: {path} is not GeoJSON: {exc}", path=path) from None
    graph = build_road_graph(doc, source=path)
    _CACHE[path] = (mtime, graph)
    return graph
