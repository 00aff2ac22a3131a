"""HTTP API of FUOTA campaigns (issue 18): logic in gateway/fuota_campaign.py.

``POST /api/v1/fuota/campaigns`` with ``{"group", "bundle", "kind"?}`` (the bundle ``citypack fuota
bundle`` wrote, base64; bodies past ``[api] max_body_bytes`` get 413 from gateway/guard.py
before they are read) answers 202 with the campaign; ``GET /api/v1/fuota/campaigns`` lists them
(no per-device rows), ``GET /api/v1/fuota/campaigns/{id}`` has every device's state, and
``POST /api/v1/fuota/campaigns/{id}/cancel`` (or ``DELETE`` on the campaign) stops it. Errors are
JSON ``{"error", "message"}`` like gateway/api/errors.py.

Several instances: any of them answers every route from the store; a campaign created or
cancelled through one that does not lead is run or stopped by the one that does within
gateway/fuota_campaign.py ``POLL_S`` (its docstring).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import CampaignRejected, ChirpStackApiError, UnknownGroup

if TYPE_CHECKING:
    from gateway.fuota_campaign import CampaignEngine
    from gateway.service import Gateway

__all__ = ["CampaignIn", "fuota_router"]

CampaignId = Annotated[str, Path(min_length=1, max_length=64)]


class CampaignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1, max_length=200, description="registry group")
    bundle: str = Field(min_length=1, description="the signed bundle, base64")
    kind: Literal["bin", "lamp"] | None = Field(
        default=None, description="only the group's devices of this kind"
    )


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def fuota_router(gateway: Gateway) -> APIRouter:
    """The routes, relative to ``/api/v1`` (gateway/api/app.py includes them there)."""
    router = APIRouter(tags=["fuota"])

    def engine() -> CampaignEngine | JSONResponse:
        found: CampaignEngine | None = getattr(gateway, "fuota", None)
        if found is None:
            return _error(409, "fuota_disabled", "FUOTA is off ([fuota] enabled)")
        return found

    @router.post("/fuota/campaigns", status_code=202)
    async def post_campaign(body: CampaignIn) -> Any:
        fe = engine()
        if isinstance(fe, JSONResponse):
            return fe
        try:
            data = base64.b64decode(body.bundle, validate=True)
        except (binascii.Error, ValueError):
            return _error(422, "bad_bundle", "bundle: expected base64")
        try:
            campaign = await fe.create(body.group, data, body.kind)
        except UnknownGroup as exc:
            return _error(404, "not_found", exc.message)
        except CampaignRejected as exc:
            status = 409 if exc.context.get("reason") in ("busy", "not_running") else 422
            return _error(status, str(exc.context.get("reason", "rejected")), exc.message)
        except ChirpStackApiError as exc:
            return _error(502, "chirpstack_error", exc.message)
        return JSONResponse(campaign.to_json(), status_code=202)

    @router.get("/fuota/campaigns")
    async def list_campaigns() -> Any:
        fe = engine()
        if isinstance(fe, JSONResponse):
            return fe
        await fe.refresh()  # another instance leads: the store has the campaigns
        return {"campaigns": [c.to_json(with_devices=False) for c in fe.all()]}

    @router.get("/fuota/campaigns/{campaign_id}")
    async def get_campaign(campaign_id: CampaignId) -> Any:
        fe = engine()
        if isinstance(fe, JSONResponse):
            return fe
        await fe.refresh()
        campaign = fe.get(campaign_id)
        if campaign is None:
            return _error(404, "not_found", f"no campaign {campaign_id}")
        return campaign.to_json()

    async def cancel(campaign_id: str) -> Any:
        fe = engine()
        if isinstance(fe, JSONResponse):
            return fe
        campaign = await fe.cancel(campaign_id)
        if campaign is None:
            return _error(404, "not_found", f"no campaign {campaign_id}")
        return campaign.to_json()

    @router.post("/fuota/campaigns/{campaign_id}/cancel")
    async def post_cancel(campaign_id: CampaignId) -> Any:
        return await cancel(campaign_id)

    @router.delete("/fuota/campaigns/{campaign_id}")
    async def delete_campaign(campaign_id: CampaignId) -> Any:
        return await cancel(campaign_id)

    return router
