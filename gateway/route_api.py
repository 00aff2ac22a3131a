"""``GET /api/v1/collection/route``: today's collection rounds (gateway/routes.py) over HTTP.

An ``APIRouter`` included under ``/api/v1`` with the token check by gateway/api/app.py, so it
has the same bearer-token check and the same JSON error shape ``{"error", "message"}``. The plan
is computed in a worker thread from a snapshot of the bins taken in the event loop (the fleet
looked at a chunk at a time), so a solve of a few seconds never stalls uplink processing.
``?format=gpx`` answers GPX 1.1.

The planner's libraries (VROOM, networkx, numpy and pandas under them) take about 60 MB of a
process's memory at import, more than the rest of the API: they are imported (in a worker
thread) by the first route asked for, not when the gateway starts (issue 17: a city's 100,000
devices must fit in 200 MB, and a gateway that never plans a route should not carry them).
"""

from __future__ import annotations

import asyncio
import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.api.bins import listed_bins
from gateway.errors import RouteError

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["router"]


async def _planner() -> tuple[ModuleType, ModuleType]:
    """gateway.routes and gateway.roadgraph, imported off the event loop the first time."""
    routes, roadgraph = await asyncio.to_thread(
        lambda: (
            importlib.import_module("gateway.routes"),
            importlib.import_module("gateway.roadgraph"),
        )
    )
    return routes, roadgraph


def router(gateway: Gateway) -> APIRouter:
    api = APIRouter()

    @api.get("/collection/route", tags=["bins"])
    async def collection_route(format: Literal["json", "gpx"] = "json") -> Response:
        cfg = gateway.config.routes
        routes, roadgraph = await _planner()
        now = gateway.clock()
        # the bins to collect, the fleet looked at a chunk at a time (gateway/api/bins.py);
        # route_stops looks again at those alone, on the same clock (one dropped meanwhile
        # with a refused batch, gateway/service.py, is not planned)
        listed = await listed_bins(gateway, now, cfg.next_round_h)
        found = (gateway.devices.get(row["dev_eui"]) for row in listed)
        devices = [device for device in found if device is not None]
        stops, unrouted = routes.route_stops(devices, gateway.config.bins, cfg, now)

        def plan() -> dict[str, Any]:
            graph = roadgraph.load_road_graph(cfg.road_graph) if cfg.road_graph else None
            result: dict[str, Any] = routes.plan_routes(stops, cfg, road_graph=graph)
            return result

        try:
            result = await asyncio.to_thread(plan)
        except RouteError as exc:
            return JSONResponse(
                {"error": "route_unavailable", "message": exc.message}, status_code=422
            )
        result["unassigned"] = unrouted + result["unassigned"]
        if format == "gpx":
            return Response(routes.route_gpx(result), media_type="application/gpx+xml")
        return JSONResponse(result)

    return api
