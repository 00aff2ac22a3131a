"""The FastAPI application: error handlers, then one router per resource, then the dashboard.

To add endpoints, write a module with ``router = APIRouter(prefix="/api/v1",
dependencies=V1_DEPENDENCIES)`` (see :mod:`gateway.api.deps`) and add it to
:data:`ROUTERS`. Middleware goes in :func:`create_app` after the app is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI

from gateway import api_fuota, api_groups, instances_api, route_api
from gateway.api import bins, commands, devices, docs, events, health, stats
from gateway.api.deps import V1_DEPENDENCIES
from gateway.api.errors import install_handlers
from gateway.config import read_secret
from gateway.guard import Guard
from gateway.web import mount as mount_dashboard

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["ROUTERS", "create_app"]

#: every router of the app, in the order they are matched (and listed in the OpenAPI document)
ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    devices.router,
    commands.router,
    bins.router,
    events.router,
    stats.router,
)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="citypack gateway",
        version="1",
        description="Fleet state, rules and tracked command downlinks for ChirpStack v4.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = gateway
    if gateway.config.chirpstack.api:  # an unreadable API key stops the start, not a cancel
        read_secret(gateway.config.chirpstack.api_token_file)
    install_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    # issue 21: GET /api/v1/collection/route (a router made per gateway)
    app.include_router(route_api.router(gateway), prefix="/api/v1", dependencies=V1_DEPENDENCIES)
    # issue 16: GET /api/v1/instances, the fleet of gateway instances
    app.include_router(
        instances_api.router(gateway), prefix="/api/v1", dependencies=V1_DEPENDENCIES
    )
    # issue 18: group commands (multicast), a router made per gateway
    app.include_router(
        api_groups.group_router(gateway), prefix="/api/v1", dependencies=V1_DEPENDENCIES
    )
    # issue 18: FUOTA campaigns
    app.include_router(
        api_fuota.fuota_router(gateway), prefix="/api/v1", dependencies=V1_DEPENDENCIES
    )
    own_auth: tuple[str, ...] = ()
    if gateway.config.os2iot.ingest == "http_push":  # issue 19; its own auth: OS2iot's header
        from gateway.os2iot import INGEST_PATH, ingest_router

        app.include_router(ingest_router(gateway))
        own_auth = (INGEST_PATH,)
    docs.mount(app)  # /docs from local files
    mount_dashboard(app, gateway, gateway.config.web)  # issue 9: the dashboard at /
    # only the probes until the store is open (the API listens first: gateway/api/health.py)
    app.add_middleware(health.Starting, gateway=gateway)
    # issue 14: the token and the body size before any body is read (gateway/guard.py); added
    # last, so it runs first
    app.add_middleware(
        Guard,
        token=lambda: gateway.api_token,
        max_body_bytes=gateway.config.api.max_body_bytes,
        own_auth=own_auth,
    )
    return app
