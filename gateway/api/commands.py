"""Tracked command downlinks: submit, list per device, look one up (ARCHITECTURE.md invariant 4)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway import lifecycle
from gateway.api.deps import (
    V1_DEPENDENCIES,
    DevEui,
    GatewayDep,
    chirpstack_queue,
    device_or_404,
)
from gateway.api.errors import ApiError
from gateway.errors import CommandError, NotCancellable, PayloadTooLarge, UnknownDevice
from gateway.store.base import ACTIVE_STATES, COMMAND_STATES

__all__ = ["CommandIn", "router"]

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["commands"])

CommandId = Annotated[str, Path(max_length=64)]


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=64)
    fields: dict[str, Any] = Field(default_factory=dict)
    confirmed: bool | None = None


@router.post("/devices/{dev_eui}/commands", status_code=202)
async def post_command(gateway: GatewayDep, dev_eui: DevEui, body: CommandIn) -> JSONResponse:
    try:
        # with several instances the device is claimed first (gateway/service.py)
        command = await gateway.submit_command_async(
            dev_eui, body.message, body.fields, confirmed=body.confirmed, source="api"
        )
    except UnknownDevice as exc:
        raise ApiError(404, "not_found", exc.message) from exc
    except PayloadTooLarge as exc:
        raise ApiError(422, "payload_too_large", exc.message) from exc
    except CommandError as exc:
        raise ApiError(422, "command_rejected", exc.message) from exc
    await gateway.flush()
    return JSONResponse(command.to_json(), status_code=202)


@router.get("/devices/{dev_eui}/commands")
async def device_commands(gateway: GatewayDep, dev_eui: DevEui) -> dict[str, Any]:
    device_or_404(gateway, dev_eui)
    return {"commands": [c.to_json() for c in gateway.commands.for_device(dev_eui.lower())]}


@router.get("/commands")
async def list_commands(
    gateway: GatewayDep,
    state: Annotated[
        list[str] | None,
        Query(description="repeatable: a command state, or 'active' (queued, sent, acknowledged)"),
    ] = None,
    dev_eui: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{16}$")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
) -> dict[str, Any]:
    """The fleet's commands, newest first (the dashboard's commands page)."""
    await gateway.flush()
    states: set[str] = set()
    for name in state or ():
        if name != "active" and name not in COMMAND_STATES:
            known = ", ".join((*COMMAND_STATES, "active"))
            raise ApiError(422, "invalid_request", f"state: {name!r} is not one of {known}")
        states.update(ACTIVE_STATES if name == "active" else (name,))
    rows = await gateway.store.recent_commands(
        states=tuple(sorted(states)) or None,
        dev_eui=dev_eui.lower() if dev_eui else None,
        limit=limit,
    )
    return {"commands": [c.to_json() for c in rows]}


@router.post("/commands/{command_id}/cancel")
async def cancel_command(
    request: Request, gateway: GatewayDep, command_id: CommandId
) -> dict[str, Any]:
    """Take back a command still in the gateway's queue, or in ChirpStack's through its gRPC API
    when ``[chirpstack] api`` is set (gateway/lifecycle.py); 409 when it cannot be."""
    command = gateway.commands.active.get(command_id) or await gateway.store.get_command(command_id)
    if command is None:
        raise ApiError(404, "not_found", f"no command {command_id}")
    try:
        cancelled = await lifecycle.cancel_command(
            gateway, command, queue=chirpstack_queue(request)
        )
    except NotCancellable as exc:
        raise ApiError(409, "not_cancellable", exc.message) from exc
    return cancelled.to_json()


@router.get("/commands/{command_id}")
async def get_command(gateway: GatewayDep, command_id: CommandId) -> dict[str, Any]:
    command = gateway.commands.active.get(command_id) or await gateway.store.get_command(command_id)
    if command is None:
        raise ApiError(404, "not_found", f"no command {command_id}")
    return command.to_json()
