"""``GET /api/v1/instances``: the fleet-level view of gateway instances (issue 16 item 3).

With a shared store (PostgreSQL) every instance writes a heartbeat row (gateway/fleet_sync.py),
so any instance answers for all of them: each with ``client_id``, ``host``, ``started_at``,
``heartbeat_at`` and ``up`` (a heartbeat in the last ``fleet_sync.UP_WITHIN_S`` seconds), plus
``up``, how many are up, and ``leading``, the once-per-fleet jobs this instance holds (an
instance silent for ``fleet_sync.FORGET_AFTER_S`` is forgotten). With
SQLite there is one instance, this one.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["router"]


def router(gateway: Gateway) -> APIRouter:
    """Included under ``/api/v1`` with the bearer token by :func:`gateway.api.app.create_app`."""
    api = APIRouter(tags=["fleet"])

    @api.get("/instances")
    async def instances() -> dict[str, Any]:
        fleet = gateway.fleet
        if fleet is None:  # one process owns the store: it is the fleet
            row = {
                "client_id": gateway.config.mqtt.client_id,
                "host": "",
                "started_at": None,
                "heartbeat_at": time.time(),
                "up": True,
            }
            return {"instances": [row], "up": 1, "leading": ["dispatch", "maintenance"]}
        view = await fleet.instances()
        return {**view, "leading": fleet.leading()}

    return api
