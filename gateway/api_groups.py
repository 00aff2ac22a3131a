"""HTTP API of group commands: one multicast frame for a whole registry group (issue 18).

``GET /api/v1/groups`` (registry groups and their members), ``POST
/api/v1/groups/{group}/commands`` (202 with the command and every member's state), ``GET
/api/v1/groups/{group}/commands`` and ``GET /api/v1/groups/{group}/commands/{id}``. Bearer
token as for the rest of ``/api/v1`` (gateway/api/app.py includes it with ``V1_DEPENDENCIES``);
errors are JSON ``{"error", "message"}`` like gateway/api/errors.py. Logic: gateway/multicast.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import ChirpStackApiError, CommandError, PayloadTooLarge, UnknownGroup

if TYPE_CHECKING:
    from gateway.multicast import MulticastManager
    from gateway.service import Gateway

__all__ = ["GroupCommandIn", "group_router"]

GroupName = Annotated[str, Path(min_length=1, max_length=200, description="registry group")]


class GroupCommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=64)
    fields: dict[str, Any] = Field(default_factory=dict)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def group_router(gateway: Gateway) -> APIRouter:
    """The routes, relative to ``/api/v1`` (gateway/api/app.py includes them there)."""
    router = APIRouter(tags=["groups"])

    def manager() -> MulticastManager | JSONResponse:
        found: MulticastManager | None = getattr(gateway, "multicast", None)
        if found is None:
            return _error(409, "multicast_disabled", "multicast is off ([multicast] enabled)")
        return found

    @router.get("/groups")
    async def list_groups() -> Any:
        mc = manager()
        if isinstance(mc, JSONResponse):
            return mc
        return {
            "group_by": mc.config.group_by,
            "groups": [
                {"group": name, "members": members} for name, members in mc.groups().items()
            ],
        }

    @router.post("/groups/{group}/commands", status_code=202)
    async def post_group_command(group: GroupName, body: GroupCommandIn) -> Any:
        mc = manager()
        if isinstance(mc, JSONResponse):
            return mc
        try:
            command = await mc.submit(group, body.message, body.fields)
        except UnknownGroup as exc:
            return _error(404, "not_found", exc.message)
        except PayloadTooLarge as exc:
            return _error(422, "payload_too_large", exc.message)
        except CommandError as exc:
            return _error(422, "command_rejected", exc.message)
        except ChirpStackApiError as exc:
            return _error(502, "chirpstack_error", exc.message)
        return JSONResponse(command.to_json(), status_code=202)

    @router.get("/groups/{group}/commands")
    async def group_commands(group: GroupName) -> Any:
        mc = manager()
        if isinstance(mc, JSONResponse):
            return mc
        return {"commands": [c.to_json() for c in await mc.read_group(group)]}

    @router.get("/groups/{group}/commands/{command_id}")
    async def get_group_command(
        group: GroupName, command_id: Annotated[str, Path(max_length=64)]
    ) -> Any:
        mc = manager()
        if isinstance(mc, JSONResponse):
            return mc
        command = await mc.read(command_id)
        if command is None or command.group != group:
            return _error(404, "not_found", f"no command {command_id} for group {group}")
        return command.to_json()

    return router
