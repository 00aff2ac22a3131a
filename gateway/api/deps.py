"""What every router depends on: the :class:`Gateway` an app serves and the bearer token check.

A router module defines ``router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES)``
and reaches the gateway through the ``GatewayDep`` parameter type; the app
holds the gateway in ``app.state.gateway`` (set by :func:`gateway.api.create_app`).
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated

from fastapi import Depends, Path, Request, Security
from fastapi.security import HTTPBearer

from gateway.api.errors import ApiError
from gateway.chirpstack_queue import ChirpStackQueue
from gateway.service import Gateway
from gateway.store.base import Device

__all__ = [
    "BEARER",
    "V1_DEPENDENCIES",
    "DevEui",
    "GatewayDep",
    "chirpstack_queue",
    "current",
    "device_or_404",
    "gateway_of",
    "require_token",
    "token_ok",
]

EUI = re.compile(r"^[0-9a-fA-F]{16}$")
DevEui = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{16}$", description="16 hex digits")]


def gateway_of(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(gateway_of)]


def token_ok(gateway: Gateway, header: str) -> bool:
    """``header`` is the ``Authorization`` value; compared in constant time (hmac)."""
    expected = gateway.api_token
    scheme, _, given = header.partition(" ")
    return bool(
        expected
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), expected.encode())
    )


# Declares the bearer scheme in the OpenAPI schema so generated clients send the token; it
# enforces nothing (auto_error=False): require_token does, with its own 401 and error JSON.
BEARER = HTTPBearer(auto_error=False, description="the token of `[api] token_file`")


async def require_token(request: Request) -> None:
    gateway = gateway_of(request)
    if not gateway.api_token:
        raise ApiError(401, "unauthorized", "the API token is not configured (api.token_file)")
    if not token_ok(gateway, request.headers.get("authorization", "")):
        raise ApiError(401, "unauthorized", "missing or wrong bearer token")


async def current(request: Request) -> None:
    """Several instances: the devices another instance changed are read before the answer
    (gateway/fleet_sync.py "lagging"), so any instance answers with the shared fleet."""
    await gateway_of(request).catch_up()


# what every /api/v1 router depends on: the token check, the scheme in the schema, and the
# devices other instances changed read first (after the token: no work for a stranger)
V1_DEPENDENCIES = [Depends(require_token), Security(BEARER), Depends(current)]


def device_or_404(gateway: Gateway, dev_eui: str) -> Device:
    device = gateway.devices.get(dev_eui.lower())
    if device is None:
        raise ApiError(404, "not_found", f"device {dev_eui} is not registered")
    return device


def chirpstack_queue(request: Request) -> ChirpStackQueue | None:
    """ChirpStack's gRPC queue client when ``[chirpstack] api`` is set (made on first use, in
    the serving loop; closed by :func:`gateway.api.server.start_api` when the API stops)."""
    state = request.app.state
    if getattr(state, "chirpstack_queue", None) is None:
        state.chirpstack_queue = ChirpStackQueue.from_config(gateway_of(request).config.chirpstack)
    queue: ChirpStackQueue | None = state.chirpstack_queue
    return queue
