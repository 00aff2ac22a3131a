"""Unauthenticated probes: ``/healthz`` (process up), ``/readyz`` (store and MQTT), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from gateway.api.deps import GatewayDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(gateway: GatewayDep) -> JSONResponse:
    store_ok = gateway.store_ok and await gateway.store.ping()
    mqtt_ok = gateway.bridge.connected.is_set()
    body = {"ready": store_ok and mqtt_ok, "mqtt": mqtt_ok, "store": store_ok}
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(gateway: GatewayDep) -> Response:
    gateway.refresh_device_gauge()
    return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
