"""The device registry and twins: ``/api/v1/devices`` (docs/interfaces.md "Gateway registry")."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway.api.deps import EUI, DevEui, GatewayDep, device_or_404, require_token

__all__ = ["DeviceIn", "router"]

router = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)], tags=["devices"])


class DeviceIn(BaseModel):
    """Registry entry (docs/interfaces.md); all but ``kind`` optional."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["bin", "lamp"]
    name: str | None = Field(default=None, max_length=200)
    join_eui: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{16}$")
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    street: str | None = Field(default=None, max_length=200)
    group: str | None = Field(default=None, max_length=200)
    neighbours: list[str] | None = Field(default=None, max_length=64)
    board: str | None = Field(default=None, max_length=100)
    serial: str | None = Field(default=None, max_length=100)
    report_interval_s: float | None = Field(default=None, gt=0, le=7 * 86400)

    @field_validator("neighbours")
    @classmethod
    def _euis(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        for eui in value:
            if not EUI.match(eui):
                raise ValueError(f"neighbour {eui!r} is not 16 hex digits")
        return [eui.lower() for eui in value]

    def registry_values(self) -> dict[str, Any]:
        """The fields the caller set (a null position clears it; other nulls are ignored)."""
        values = self.model_dump(exclude_unset=True)
        values = {
            k: v for k, v in values.items() if v is not None or k in ("latitude", "longitude")
        }
        if "join_eui" in values:
            values["join_eui"] = values["join_eui"].lower()
        return values


@router.get("/devices")
async def list_devices(
    gateway: GatewayDep,
    kind: str | None = None,
    street: str | None = None,
    group: str | None = None,
    availability: Literal["online", "offline", "unknown"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    matches = [
        d
        for d in gateway.devices.values()
        if (kind is None or d.kind == kind)
        and (street is None or d.street == street)
        and (group is None or d.group == group)
        and (availability is None or d.availability == availability)
    ]
    matches.sort(key=lambda d: d.dev_eui)
    page = matches[offset : offset + limit]
    return {"count": len(matches), "devices": [d.to_json() for d in page]}


@router.get("/devices/{dev_eui}")
async def get_device(gateway: GatewayDep, dev_eui: DevEui) -> dict[str, Any]:
    return dict(device_or_404(gateway, dev_eui).to_json())


@router.put("/devices/{dev_eui}")
async def put_device(gateway: GatewayDep, dev_eui: DevEui, body: DeviceIn) -> dict[str, Any]:
    device = gateway.upsert_device(dev_eui, body.registry_values())
    await gateway.flush()
    return dict(device.to_json())


@router.get("/devices/{dev_eui}/uplinks")
async def uplinks(
    gateway: GatewayDep,
    dev_eui: DevEui,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    before_id: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    device_or_404(gateway, dev_eui)
    rows = await gateway.store.uplinks(dev_eui.lower(), limit=limit, before_id=before_id)
    return {"dev_eui": dev_eui.lower(), "uplinks": rows}
