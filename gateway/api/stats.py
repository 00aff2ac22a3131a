"""Fleet-wide counts: devices by kind and availability, commands by state, uplinks since start."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import V1_DEPENDENCIES, GatewayDep
from gateway.store.base import COMMAND_STATES

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["stats"])


@router.get("/stats")
async def stats(gateway: GatewayDep) -> dict[str, Any]:
    await gateway.flush()
    counts = await gateway.store.counts()
    by_kind: dict[str, int] = {}
    by_availability: dict[str, int] = {}
    cross: dict[str, dict[str, int]] = {}
    for device in gateway.devices.values():
        by_kind[device.kind] = by_kind.get(device.kind, 0) + 1
        by_availability[device.availability] = by_availability.get(device.availability, 0) + 1
        row = cross.setdefault(device.kind, {})
        row[device.availability] = row.get(device.availability, 0) + 1
    commands = {state: 0 for state in COMMAND_STATES}
    commands.update(counts["commands_by_state"])
    uplink_counts = {
        outcome: int(gateway.metrics.uplinks.labels(outcome)._value.get())
        for outcome in ("processed", "duplicate", "undecodable", "invalid_event")
    }
    return {
        "uplinks_stored": counts["uplinks_stored"],
        "dead_letters": counts["dead_letters"],
        "devices": len(gateway.devices),
        "devices_by_kind": by_kind,
        "devices_by_availability": by_availability,
        "devices_by_kind_and_availability": cross,
        "commands_by_state": commands,
        "uplinks_since_start": uplink_counts,
        "mqtt_connected": gateway.bridge.connected.is_set(),
    }
