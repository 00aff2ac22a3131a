"""The device registry and twins: ``/api/v1/devices`` (docs/interfaces.md "Gateway registry")."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gateway import lifecycle
from gateway.api.deps import EUI, V1_DEPENDENCIES, DevEui, GatewayDep, device_or_404
from gateway.store.base import CommandRecord, Device
from gateway.turns import in_turns, joined_in_turns

__all__ = ["BATCH_MAX", "DeviceIn", "router"]

BATCH_MAX = 1000  # devices per PUT /api/v1/devices (one commit for all of them)

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["devices"])


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


class DeviceBatchIn(BaseModel):
    """``PUT /api/v1/devices``: many registry entries at once, each ``{"dev_eui", ...DeviceIn}``;
    entries are checked one by one so a bad one does not hold up the rest."""

    model_config = ConfigDict(extra="forbid")

    devices: list[dict[str, Any]] = Field(max_length=BATCH_MAX)


def _unchanged(gateway: GatewayDep, dev_eui: str, values: dict[str, Any]) -> bool | None:
    """None when the device is new, else whether ``values`` are what it already holds."""
    device = gateway.devices.get(dev_eui)
    if device is None:
        return None
    return (
        device.registered
        and device.decommissioned_at is None
        and all(getattr(device, key) == value for key, value in values.items())
    )


@router.put("/devices")
async def put_devices(gateway: GatewayDep, body: DeviceBatchIn) -> dict[str, Any]:
    """Register or update up to ``BATCH_MAX`` devices in one commit (``citypack provision
    register``). Answers ``{"results": [{"dev_eui", "outcome": created|updated|unchanged}` or
    ``{"dev_eui", "error"}]}`` in the order given; an entry that is already as given is not
    rewritten."""
    results: list[dict[str, Any]] = []
    await gateway.refuse_unless_committing()
    for index, entry in enumerate(body.devices):
        entry = dict(entry)
        dev_eui = entry.pop("dev_eui", None)
        if not isinstance(dev_eui, str) or not EUI.match(dev_eui):
            results.append({"dev_eui": dev_eui, "error": f"devices[{index}].dev_eui: not 16 hex"})
            continue
        dev_eui = dev_eui.lower()
        try:
            values = DeviceIn.model_validate(entry).registry_values()
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            results.append({"dev_eui": dev_eui, "error": f"{where}: {first.get('msg')}"})
            continue
        known = _unchanged(gateway, dev_eui, values)
        if known:
            results.append({"dev_eui": dev_eui, "outcome": "unchanged"})
            continue
        values["decommissioned_at"] = None
        # one instance: staged, committed once below; several: claimed and committed each
        await gateway.upsert_device_async(dev_eui, values, batched=True)
        results.append({"dev_eui": dev_eui, "outcome": "created" if known is None else "updated"})
    await gateway.flush()
    gateway.require_committed("import")
    return {"results": results}


# GET /devices at city scale (100,000 devices; the dashboard loads them all): the devices are
# matched and encoded this many at a time, with a turn of the event loop between, so uplinks
# and probes go on meanwhile (issue 17: one page of the whole fleet held the loop 12.6 s)
_MATCH_CHUNK = 5000
_ENCODE_CHUNK = 500
_BY_EUI = operator.attrgetter("dev_eui")


@router.get("/devices", response_model=dict[str, Any])
async def list_devices(
    gateway: GatewayDep,
    kind: str | None = None,
    street: str | None = None,
    group: str | None = None,
    availability: Literal["online", "offline", "unknown"] | None = None,
    decommissioned: bool = False,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Devices in service; ``decommissioned=true`` lists the decommissioned ones instead.
    ``{"count": <matches>, "devices": [<device>, ...]}``, ordered by devEUI, streamed."""
    matches: list[Device] = []
    async for part in in_turns(list(gateway.devices.values()), _MATCH_CHUNK):
        matches += [
            d
            for d in part
            if (d.decommissioned_at is not None) == decommissioned
            and (kind is None or d.kind == kind)
            and (street is None or d.street == street)
            and (group is None or d.group == group)
            and (availability is None or d.availability == availability)
        ]
    matches.sort(key=_BY_EUI)  # the registry is mostly in this order already: one pass
    page = matches[offset : offset + limit]
    return StreamingResponse(_page(len(matches), page), media_type="application/json")


def _page(count: int, page: list[Device]) -> AsyncIterator[bytes]:
    """The listing's JSON, ``_ENCODE_CHUNK`` devices a piece (each as ``Device.to_json``)."""
    return joined_in_turns(
        page,
        _ENCODE_CHUNK,
        lambda part: b",".join([d.json_bytes() for d in part]),
        head=b'{"count":%d,"devices":[' % count,
        tail=b"]}",
    )


@router.get("/devices/{dev_eui}")
async def get_device(gateway: GatewayDep, dev_eui: DevEui) -> dict[str, Any]:
    return dict(device_or_404(gateway, dev_eui).to_json())


@router.put("/devices/{dev_eui}")
async def put_device(gateway: GatewayDep, dev_eui: DevEui, body: DeviceIn) -> dict[str, Any]:
    values = body.registry_values()
    values["decommissioned_at"] = None  # registering a decommissioned device brings it back
    device = await gateway.upsert_device_async(dev_eui, values)
    await gateway.flush()
    return dict(device.to_json())


@router.delete("/devices/{dev_eui}")
async def delete_device(gateway: GatewayDep, dev_eui: DevEui) -> dict[str, Any]:
    """Decommission (gateway/lifecycle.py): history kept, commands cancelled where they still
    can be, no alarms or availability checks, retained MQTT topics cleared. Idempotent."""
    device_or_404(gateway, dev_eui)

    def decommission() -> tuple[Device, list[CommandRecord]]:
        device = device_or_404(gateway, dev_eui)  # as a claim or a refused batch read it
        return device, lifecycle.decommission(gateway, device)

    device, cancelled = await gateway.change_committed(dev_eui.lower(), decommission)
    gateway.publisher.clear(device)
    return {**device.to_json(), "cancelled_commands": [c.id for c in cancelled]}


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
