"""``GET /api/v1/collection/route``: today's collection rounds (gateway/routes.py) over HTTP.

An ``APIRouter`` included under ``/api/v1`` with the token check by gateway/api/app.py, so it
has the same bearer-token check and the same JSON error shape ``{"error", "message"}``. The plan
is computed in a worker thread from a snapshot of the bins taken in the event loop, so a solve of
a few seconds never stalls uplink processing. ``?format=gpx`` answers GPX 1.1.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from gateway.errors import RouteError
from gateway.roadgraph import load_road_graph
from gateway.routes import plan_routes, route_gpx, route_stops

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["router"]


def router(gateway: Gateway) -> APIRouter:
    api = APIRouter()

    @api.get("/collection/route", tags=["bins"])
    async def collection_route(format: Literal["json", "gpx"] = "json") -> Response:
        cfg = gateway.config.routes
        stops, unrouted = route_stops(
            gateway.devices.values(), gateway.config.bins, cfg, gateway.clock()
        )

        def plan() -> dict[str, Any]:
            graph = load_road_graph(cfg.road_graph) if cfg.road_graph else None
            return plan_routes(stops, cfg, road_graph=graph)

        try:
            result = await asyncio.to_thread(plan)
        except RouteError as exc:
            return JSONResponse(
                {"error": "route_unavailable", "message": exc.message}, status_code=422
            )
        result["unassigned"] = unrouted + result["unassigned"]
        if format == "gpx":
            return Response(route_gpx(result), media_type="application/gpx+xml")
        return JSONResponse(result)

    return api
