"""Bin collection: which bins to empty, as JSON, CSV or GeoJSON (gateway/rules/bins.py)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from gateway.api.deps import V1_DEPENDENCIES, GatewayDep
from gateway.rules import bins as bin_rules
from gateway.turns import in_turns, joined_in_turns

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["listed_bins", "router"]

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["bins"])

# devices looked at between two turns of the event loop: the dashboard's overview asks for the
# list about once a second while bins report, and at 100,000 devices one pass over them all held
# the loop 86-95 ms each time (353 ms the first) (issue 17); a chunk takes a few milliseconds
_CHUNK = 2000
_ENCODE_CHUNK = 1000  # listed bins encoded between two turns of the event loop


async def listed_bins(
    gateway: Gateway, now: float, horizon_h: float | None
) -> list[dict[str, Any]]:
    """``collection_list`` of the whole fleet (gateway/rules/bins.py), ``_CHUNK`` devices
    between two turns of the event loop; ``GET /api/v1/collection/route`` plans from it too
    (gateway/route_api.py)."""
    rows: list[dict[str, Any]] = []
    async for part in in_turns(list(gateway.devices.values()), _CHUNK):
        rows += bin_rules.collection_rows(part, gateway.config.bins, now, horizon_h=horizon_h)
    bin_rules.order_collection(rows)
    return rows


@router.get("/collection")
async def collection(
    gateway: GatewayDep,
    format: Literal["json", "csv", "geojson"] = "json",
    horizon_h: Annotated[float | None, Query(ge=0, le=24 * 14)] = None,
) -> Response:
    rows = await listed_bins(gateway, gateway.clock(), horizon_h)
    # encoded as it is sent, _ENCODE_CHUNK rows a piece: 10,000 bins listed of 100,000 devices
    # held the loop 60 ms as JSON, 86-94 as CSV and 101-127 as GeoJSON when encoded in one go,
    # 8-13 ms in pieces (gateway/README.md §9)
    if format == "csv":
        body = joined_in_turns(
            rows,
            _ENCODE_CHUNK,
            lambda part: bin_rules.collection_csv(part, header=False).encode(),
            head=bin_rules.collection_csv([]).encode(),
            separator=b"",
        )
        return StreamingResponse(body, media_type="text/csv")
    if format == "geojson":
        body = joined_in_turns(
            rows,
            _ENCODE_CHUNK,
            lambda part: b",".join([_json(bin_rules.collection_feature(r)) for r in part]),
            head=b'{"type":"FeatureCollection","features":[',
            tail=b"]}",
        )
        return StreamingResponse(body, media_type="application/geo+json")
    body = joined_in_turns(
        rows,
        _ENCODE_CHUNK,
        lambda part: b",".join([_json(r) for r in part]),
        head=b'{"count":%d,"bins":[' % len(rows),
        tail=b"]}",
    )
    return StreamingResponse(body, media_type="application/json")


def _json(doc: dict[str, Any]) -> bytes:
    """As ``JSONResponse`` renders a document (compact, UTF-8, no NaN)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
