"""Unauthenticated probes: ``/healthz`` (process up), ``/readyz`` (store and MQTT), ``/metrics``.

The API listens before the gateway has opened its store (gateway/service.py ``Gateway.run``):
meanwhile ``/healthz`` answers 200 ``{"status": "starting"}`` (the process lives: a supervisor
must not kill it), ``/readyz`` 503, and :class:`Starting` answers every other path 503, since
the fleet is not loaded yet and an answer from it would be wrong.
"""

from __future__ import annotations

import json

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.api.deps import GatewayDep
from gateway.service import Gateway

__all__ = ["Starting", "router"]

router = APIRouter(tags=["health"])

_PROBES = frozenset({"/healthz", "/readyz"})


@router.get("/healthz")
async def healthz(gateway: GatewayDep) -> dict[str, str]:
    return {"status": "starting" if gateway.starting else "ok"}


@router.get("/readyz")
async def readyz(gateway: GatewayDep) -> JSONResponse:
    store_ok = gateway.store_ok and await gateway.store.ping()
    mqtt_ok = gateway.bridge.connected.is_set()
    body = {"ready": store_ok and mqtt_ok, "mqtt": mqtt_ok, "store": store_ok}
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(gateway: GatewayDep) -> Response:
    await gateway.refresh_device_gauge_async()
    return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


class Starting:
    """ASGI middleware: while ``gateway.starting``, 503 ``starting`` (``Retry-After: 1``, RFC 9110
    §15.6.4, §10.2.3) for every HTTP path but the probes."""

    def __init__(self, app: ASGIApp, *, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.gateway.starting or scope["type"] != "http" or scope.get("path") in _PROBES:
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {"error": "starting", "message": "the gateway is opening its store; try again"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
