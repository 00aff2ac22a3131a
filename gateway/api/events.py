"""Derived events and dead letters (uplinks stored raw because they could not be decoded)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.api.deps import V1_DEPENDENCIES, GatewayDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", dependencies=V1_DEPENDENCIES, tags=["events"])


@router.get("/events")
async def events(
    gateway: GatewayDep,
    type: str | None = None,
    dev_eui: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{16}$")] = None,
    since: float | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> dict[str, Any]:
    await gateway.flush()
    rows = await gateway.store.events(
        type=type, dev_eui=dev_eui.lower() if dev_eui else None, since=since, limit=limit
    )
    return {"events": [e.to_json() for e in rows]}


@router.get("/dead_letters")
async def dead_letters(
    gateway: GatewayDep, limit: Annotated[int, Query(ge=1, le=10_000)] = 100
) -> dict[str, Any]:
    await gateway.flush()
    return {"dead_letters": [d.to_json() for d in await gateway.store.dead_letters(limit=limit)]}
