"""HTTP API of the gateway (FastAPI, served by uvicorn in the gateway's own event loop).

Contracts: ARCHITECTURE.md "HTTP API" and docs/interfaces.md "Gateway registry over HTTP".
Everything under ``/api/v1`` needs ``Authorization: Bearer <token>`` (compared with
``hmac.compare_digest``); ``/healthz``, ``/readyz`` and ``/metrics`` do not. Every error is JSON
``{"error": <code>, "message": <text>}``. OpenAPI at ``/openapi.json``.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import socket
from typing import TYPE_CHECKING, Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import route_api
from gateway.errors import CommandError, PayloadTooLarge, UnknownDevice
from gateway.guard import Guard
from gateway.httpserver import uvicorn_config
from gateway.rules import bins as bin_rules
from gateway.store.base import COMMAND_STATES
from gateway.web import mount as mount_dashboard

if TYPE_CHECKING:
    from gateway.service import Gateway

__all__ = ["create_app", "start_api"]

_EUI = re.compile(r"^[0-9a-fA-F]{16}$")
DevEui = Annotated[str, Path(pattern=r"^[0-9a-fA-F]{16}$", description="16 hex digits")]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


# Declares the bearer scheme in the OpenAPI schema so generated clients send the token; it
# enforces nothing (auto_error=False): require_token does, with its own 401 and error JSON.
BEARER = HTTPBearer(auto_error=False, description="the token of `[api] token_file`")


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
            if not _EUI.match(eui):
                raise ValueError(f"neighbour {eui!r} is not 16 hex digits")
        return [eui.lower() for eui in value]


class CommandIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = Field(min_length=1, max_length=64)
    fields: dict[str, Any] = Field(default_factory=dict)
    confirmed: bool | None = None


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def create_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(
        title="citypack gateway",
        version="1",
        description="Fleet state, rules and tracked command downlinks for ChirpStack v4.",
        docs_url=None,
        redoc_url=None,
    )

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        gateway.log.exception("api error", extra={"path": request.url.path})
        return _error(500, "internal", f"{type(exc).__name__}")

    async def require_token(request: Request) -> None:
        expected = gateway.api_token
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if not expected:
            raise ApiError(401, "unauthorized", "the API token is not configured (api.token_file)")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), expected.encode()
        ):
            raise ApiError(401, "unauthorized", "missing or wrong bearer token")

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    async def readyz() -> JSONResponse:
        store_ok = gateway.store_ok and await gateway.store.ping()
        mqtt_ok = gateway.bridge.connected.is_set()
        body = {"ready": store_ok and mqtt_ok, "mqtt": mqtt_ok, "store": store_ok}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        gateway.refresh_device_gauge()
        return Response(
            gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    v1 = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token), Security(BEARER)])

    def _device(dev_eui: str) -> Any:
        device = gateway.devices.get(dev_eui.lower())
        if device is None:
            raise ApiError(404, "not_found", f"device {dev_eui} is not registered")
        return device

    @v1.get("/devices", tags=["devices"])
    async def list_devices(
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

    @v1.get("/devices/{dev_eui}", tags=["devices"])
    async def get_device(dev_eui: DevEui) -> dict[str, Any]:
        return dict(_device(dev_eui).to_json())

    @v1.put("/devices/{dev_eui}", tags=["devices"])
    async def put_device(dev_eui: DevEui, body: DeviceIn) -> dict[str, Any]:
        values = body.model_dump(exclude_unset=True)
        values = {
            k: v for k, v in values.items() if v is not None or k in ("latitude", "longitude")
        }
        if "join_eui" in values:
            values["join_eui"] = values["join_eui"].lower()
        device = gateway.upsert_device(dev_eui, values)
        await gateway.flush()
        return dict(device.to_json())

    @v1.get("/devices/{dev_eui}/uplinks", tags=["devices"])
    async def uplinks(
        dev_eui: DevEui,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        before_id: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        _device(dev_eui)
        rows = await gateway.store.uplinks(dev_eui.lower(), limit=limit, before_id=before_id)
        return {"dev_eui": dev_eui.lower(), "uplinks": rows}

    @v1.post("/devices/{dev_eui}/commands", tags=["commands"], status_code=202)
    async def post_command(dev_eui: DevEui, body: CommandIn) -> JSONResponse:
        try:
            command = gateway.submit_command(
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

    @v1.get("/devices/{dev_eui}/commands", tags=["commands"])
    async def device_commands(dev_eui: DevEui) -> dict[str, Any]:
        _device(dev_eui)
        return {"commands": [c.to_json() for c in gateway.commands.for_device(dev_eui.lower())]}

    @v1.get("/commands/{command_id}", tags=["commands"])
    async def get_command(command_id: Annotated[str, Path(max_length=64)]) -> dict[str, Any]:
        command = gateway.commands.active.get(command_id) or await gateway.store.get_command(
            command_id
        )
        if command is None:
            raise ApiError(404, "not_found", f"no command {command_id}")
        return command.to_json()

    @v1.get("/collection", tags=["bins"])
    async def collection(
        format: Literal["json", "csv", "geojson"] = "json",
        horizon_h: Annotated[float | None, Query(ge=0, le=24 * 14)] = None,
    ) -> Response:
        rows = bin_rules.collection_list(
            gateway.devices.values(), gateway.config.bins, gateway.clock(), horizon_h=horizon_h
        )
        if format == "csv":
            return Response(bin_rules.collection_csv(rows), media_type="text/csv")
        if format == "geojson":
            return JSONResponse(
                bin_rules.collection_geojson(rows), media_type="application/geo+json"
            )
        return JSONResponse({"count": len(rows), "bins": rows})

    @v1.get("/events", tags=["events"])
    async def events(
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

    @v1.get("/dead_letters", tags=["events"])
    async def dead_letters(limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> dict[str, Any]:
        await gateway.flush()
        return {
            "dead_letters": [d.to_json() for d in await gateway.store.dead_letters(limit=limit)]
        }

    @v1.get("/stats", tags=["stats"])
    async def stats() -> dict[str, Any]:
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

    v1.include_router(route_api.router(gateway))  # issue 21: GET /api/v1/collection/route
    app.include_router(v1)
    # token and body size before any body is read (issue 14)
    app.add_middleware(
        Guard, token=lambda: gateway.api_token, max_body_bytes=gateway.config.api.max_body_bytes
    )
    mount_dashboard(app, gateway, gateway.config.web)  # issue 9: the dashboard at /
    return app


class _Server(uvicorn.Server):
    """uvicorn inside our loop: the gateway owns the signals (SIGTERM stops everything)."""

    def capture_signals(self) -> Any:
        import contextlib

        return contextlib.nullcontext()


def bind_api(gateway: Gateway) -> socket.socket:
    """Bind ``[api] listen`` (port 0 = any free port, see ``gateway.api_port``); an address in
    use is a plain :class:`OSError` here, before any task starts."""
    host, _, port = gateway.config.api.listen.rpartition(":")
    host = host.strip("[]")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT
    try:
        sock.bind((host, int(port)))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"api.listen {gateway.config.api.listen}: {exc.strerror}") from exc
    sock.setblocking(False)
    gateway.api_port = int(sock.getsockname()[1])
    return sock


async def start_api(
    gateway: Gateway, group: asyncio.TaskGroup, sock: socket.socket
) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Serve the API on ``sock`` (from :func:`bind_api`) as the task named ``api``."""
    host = gateway.config.api.listen.rpartition(":")[0]
    server = _Server(uvicorn_config(create_app(gateway), gateway.config.api))

    async def serve() -> None:
        try:
            await server.serve(sockets=[sock])
        finally:
            # when cancelled, uvicorn skips its shutdown: close its asyncio servers first (they
            # own the listening socket's selector registration), then the socket itself
            for listener in server.servers:
                listener.close()
            sock.close()

    task: asyncio.Task[None] = group.create_task(serve(), name="api")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn has no event for it
        await asyncio.sleep(0.01)
    gateway.log.info("api listening", extra={"listen": f"{host}:{gateway.api_port}"})
    return server, task
