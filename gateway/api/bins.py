"""Bin collection: which bins to empty, as JSON, CSV or GeoJSON (gateway/rules/bins.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from gateway.api.deps import V1_DEPENDENCIES, GatewayDep
from gateway.rules import bins as bin_rules

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["bins"])


@router.get("/collection")
async def collection(
    gateway: GatewayDep,
    format: Literal["json", "csv", "geojson"] = "json",
    horizon_h: Annotated[float | None, Query(ge=0, le=24 * 14)] = None,
) -> Response:
    rows = bin_rules.collection_list(
        gateway.devices.values(), gateway.config.bins, gateway.clock(), horizon_h=horizon_h
    )
    if format == "csv":
        return Response(bin_rules.collection_csv(rows), media_type="text/csv")
    if format == "geojson":
        return JSONResponse(bin_rules.collection_geojson(rows), media_type="application/geo+json")
    return JSONResponse({"count": len(rows), "bins": rows})
