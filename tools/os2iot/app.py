"""The OS2iot emulator's HTTP API: the slice of OS2iot's ``/api/v1`` that citypack uses.

Shapes and quirks as docs/os2iot.md gives them: the ``X-API-KEY`` header (raw value, no prefix),
``createMany`` with 1..50 items and class-validator's 400 for the whole batch, per-item errors
in a 201, ``metadata`` as a JSON string, ``POST …/downlink`` answering an empty 201 (no queue
item id) or 500 ``Could not send to chirpstack, try again later.``, downlink state only by
polling, ``/search`` with required ``limit`` and ``offset``, a 100 kB body limit, and errors
as ``{statusCode, message, error}`` or a bare ``{"message": "MESSAGE.…"}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tools.netsim.config import NetsimError
from tools.os2iot.model import BATCH_MAX, validate_device
from tools.os2iot.multicast import MulticastInvalid
from tools.os2iot.state import ChirpStackUnavailable, ItemError, Os2iotState

__all__ = ["BODY_LIMIT", "create_app"]

BODY_LIMIT = 100 * 1024  # body-parser's default, which OS2iot keeps (docs/os2iot.md §6)
PREFIX = "/api/v1"
Handler = Callable[[Request], Awaitable[Response]]


def _bad_request(message: Any) -> JSONResponse:
    return JSONResponse(
        {"statusCode": 400, "message": message, "error": "Bad Request"}, status_code=400
    )


def _not_found() -> JSONResponse:
    return JSONResponse({"message": "MESSAGE.ID-DOES-NOT-EXIST"}, status_code=404)


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        super().__init__("refused")
        self.response = response


async def _json(request: Request) -> Any:
    body = await request.body()
    if len(body) > BODY_LIMIT:
        raise _Refused(
            JSONResponse(
                {
                    "statusCode": 413,
                    "message": "request entity too large",
                    "error": "Payload Too Large",
                },
                status_code=413,
            )
        )
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise _Refused(_bad_request("Unexpected token in JSON")) from None


def _int_param(request: Request, name: str, *, required: bool, default: int = 0) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        if required:
            raise _Refused(_bad_request("Validation failed (numeric string is expected)"))
        return default
    try:
        return int(raw)
    except ValueError:
        raise _Refused(_bad_request("Validation failed (numeric string is expected)")) from None


def create_app(state: Os2iotState) -> Starlette:
    def guarded(handler: Handler) -> Handler:
        async def run(request: Request) -> Response:
            key = request.headers.get("x-api-key", "")
            if not hmac.compare_digest(key.encode(), state.api_key.encode()):
                return JSONResponse(
                    {"statusCode": 401, "message": "MESSAGE.API-KEY-AUTH-FAILED"}, status_code=401
                )
            try:
                return await handler(request)
            except _Refused as refused:
                return refused.response

        return run

    def device_of(request: Request) -> Any:
        try:
            return state.devices.get(int(request.path_params["id"]))
        except ValueError:
            return None

    async def healthcheck(request: Request) -> Response:
        return PlainTextResponse("OK")

    async def create_many(request: Request) -> Response:
        doc = await _json(request)
        items = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
            return _bad_request([f"data must contain between 1 and {BATCH_MAX} elements"])
        errors = [e for item in items for e in validate_device(item)]
        if errors:
            return _bad_request(errors)
        result = state.create_many(items)
        _changed(state)
        return JSONResponse(result, status_code=201)

    async def create_one(request: Request) -> Response:
        item = await _json(request)
        errors = validate_device(item)
        if errors:
            return _bad_request(errors)
        (result,) = state.create_many([item])
        if "error" in result:
            return JSONResponse({"message": result["error"]["message"]}, status_code=400)
        _changed(state)
        return JSONResponse(result["data"], status_code=201)

    async def get_device(request: Request) -> Response:
        device = device_of(request)
        if device is None:
            return _not_found()
        return JSONResponse(device.entity(with_settings=True))

    async def put_device(request: Request) -> Response:
        item = await _json(request)
        errors = validate_device(item)
        if errors:
            return _bad_request(errors)
        device = device_of(request)
        if device is None:
            return _not_found()
        try:
            state.update(device.id, item)
        except ItemError as exc:
            return JSONResponse({"message": exc.message}, status_code=400)
        _changed(state)
        return JSONResponse(device.entity())

    async def delete_device(request: Request) -> Response:
        device = device_of(request)
        affected = state.delete(device.id) if device is not None else 0
        _changed(state)
        return JSONResponse({"affected": affected})

    async def search(request: Request) -> Response:
        limit = _int_param(request, "limit", required=True)
        offset = _int_param(request, "offset", required=True)
        hits = state.search(request.query_params.get("q", ""))
        return JSONResponse({"data": hits[offset : offset + limit], "count": len(hits)})

    async def application_devices(request: Request) -> Response:
        try:
            app_id = int(request.path_params["id"])
        except ValueError:
            return _not_found()
        limit = _int_param(request, "limit", required=False, default=100)
        offset = _int_param(request, "offset", required=False)
        rows = sorted(
            (d for d in state.devices.values() if d.application_id == app_id), key=lambda d: d.id
        )
        page = [d.entity(with_settings=True) for d in rows[offset : offset + limit]]
        return JSONResponse({"data": page, "count": len(rows)})

    async def device_profiles(request: Request) -> Response:
        limit = _int_param(request, "limit", required=False, default=50)
        offset = _int_param(request, "offset", required=False)
        rows = [
            {"id": p.id, "name": p.name, "internalOrganizationId": 1}
            for p in state.profiles[offset : offset + limit]
        ]
        return JSONResponse({"result": rows, "totalCount": str(len(state.profiles))})

    async def post_downlink(request: Request) -> Response:
        device = device_of(request)
        if device is None:
            return _not_found()
        doc = await _json(request)
        data, port = _downlink_body(doc)
        if data is None:
            return _bad_request(["data must match /^[0-9A-Fa-f]+$/ regular expression"])
        if port is None:
            # no validator in OS2iot; the NOT NULL column and ChirpStack refuse the rest
            return JSONResponse(_send_failed(), status_code=500)
        try:
            state.enqueue(device, data, port, bool(doc.get("confirmedDownlink", False)))
        except ChirpStackUnavailable:
            return JSONResponse(_send_failed(), status_code=500)
        return Response(status_code=201)

    async def pending(request: Request) -> Response:
        device = device_of(request)
        return _not_found() if device is None else JSONResponse(state.pending(device.id))

    async def history(request: Request) -> Response:
        device = device_of(request)
        return _not_found() if device is None else JSONResponse(state.history(device.id))

    async def flush(request: Request) -> Response:
        device = device_of(request)
        if device is None:
            return _not_found()
        state.flush(device)
        return Response(status_code=201)

    async def create_target(request: Request) -> Response:
        doc = await _json(request)
        if not isinstance(doc, dict) or doc.get("type") != "HTTP_PUSH":
            return _bad_request(["only HTTP_PUSH data targets are emulated"])
        url = doc.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            return _bad_request(["url must be an URL address"])
        known_app = doc.get("applicationId") in state.applications
        if not isinstance(doc.get("name"), str) or not known_app:
            return _bad_request(["name and an existing applicationId are required"])
        target = state.create_target(doc)
        return JSONResponse(target.entity(), status_code=201)

    async def connect(request: Request) -> Response:
        doc = await _json(request)
        if not isinstance(doc, dict):
            return _bad_request(["body must be an object"])
        target = state.targets.get(doc.get("dataTargetId", -1))
        ids = doc.get("iotDeviceIds")
        if target is None or not isinstance(ids, list):
            return _bad_request(["iotDeviceIds and an existing dataTargetId are required"])
        if doc.get("payloadDecoderId") is not None:
            return _bad_request(["payload decoders are not emulated: connect without one"])
        for device_id in ids:
            device = state.devices.get(device_id) if isinstance(device_id, int) else None
            if device is None or device.application_id != target.application_id:
                return JSONResponse({"message": "MESSAGE.NOT-SAME-APPLICATION"}, status_code=400)
        target.device_ids.update(ids)
        return JSONResponse({"iotDeviceIds": ids, "dataTargetId": target.id}, status_code=201)

    async def target_log(request: Request) -> Response:
        try:
            rows = state.logs.get(int(request.path_params["id"]))
        except ValueError:
            rows = None
        if rows is None:
            return _not_found()
        return JSONResponse([r.row() for r in reversed(rows)])

    # --- multicast (reference/os2iot.md §3.3, tools/os2iot/multicast.py) -------------------
    def multicast_of(request: Request) -> Any:
        try:
            return state.multicasts.rows.get(int(request.path_params["id"]))
        except ValueError:
            return None

    async def create_multicast(request: Request) -> Response:
        try:
            row = state.multicasts.create(await _json(request))
        except MulticastInvalid as exc:
            return _bad_request(exc.messages)
        return JSONResponse(state.multicasts.entity(row), status_code=201)

    async def list_multicasts(request: Request) -> Response:
        limit = _int_param(request, "limit", required=False, default=100)
        offset = _int_param(request, "offset", required=False)
        app = request.query_params.get("applicationId")
        rows = sorted(
            (r for r in state.multicasts.rows.values() if not app or str(r.application_id) == app),
            key=lambda r: r.id,
        )
        page = [state.multicasts.entity(r, with_devices=False) for r in rows[offset:][:limit]]
        return JSONResponse({"data": page, "count": len(rows)})

    async def get_multicast(request: Request) -> Response:
        row = multicast_of(request)
        return _not_found() if row is None else JSONResponse(state.multicasts.entity(row))

    async def put_multicast(request: Request) -> Response:
        row = multicast_of(request)
        if row is None:
            return _not_found()
        try:
            state.multicasts.update(row, await _json(request))
        except MulticastInvalid as exc:
            return _bad_request(exc.messages)
        return JSONResponse(state.multicasts.entity(row))

    async def delete_multicast(request: Request) -> Response:
        row = multicast_of(request)
        if row is None:
            return _not_found()
        state.multicasts.delete(row)
        return JSONResponse({"affected": 1})

    async def multicast_downlink(request: Request) -> Response:
        row = multicast_of(request)
        if row is None:
            return _not_found()
        data, port = _downlink_body(await _json(request))
        if data is None:
            return _bad_request(["data must match /^[0-9A-Fa-f]+$/ regular expression"])
        if port is None:  # CreateMulticastDownlinkDto validates it
            return _bad_request(["port must not be less than 1"])
        if state.faults.downlink_errors > 0:
            state.faults.downlink_errors -= 1
            return JSONResponse(_send_failed(), status_code=500)
        try:
            f_cnt = state.multicasts.downlink(row, bytes.fromhex(data), port)
        except MulticastInvalid as exc:
            return _bad_request(exc.messages)
        except NetsimError:
            return JSONResponse(_send_failed(), status_code=500)
        return JSONResponse({"fCnt": f_cnt}, status_code=201)

    async def multicast_queue(request: Request) -> Response:
        row = multicast_of(request)
        if row is None:
            return _not_found()
        return JSONResponse({"deviceQueueItems": state.multicasts.queue(row)})

    routes = [
        Route("/healthcheck", healthcheck),
        Route(f"{PREFIX}/healthcheck", healthcheck),
    ]
    guarded_routes: list[tuple[str, Handler, str]] = [
        ("/iot-device/createMany", create_many, "POST"),
        ("/iot-device", create_one, "POST"),
        ("/iot-device/{id}", get_device, "GET"),
        ("/iot-device/{id}", put_device, "PUT"),
        ("/iot-device/{id}", delete_device, "DELETE"),
        ("/iot-device/{id}/downlink", post_downlink, "POST"),
        ("/iot-device/{id}/downlink", pending, "GET"),
        ("/iot-device/{id}/historicalDownlink", history, "GET"),
        ("/iot-device/{id}/flushDownlinkQueue", flush, "POST"),
        ("/search", search, "GET"),
        ("/application/{id}/iot-devices", application_devices, "GET"),
        ("/chirpstack/device-profiles", device_profiles, "GET"),
        ("/data-target", create_target, "POST"),
        ("/iot-device-payload-decoder-data-target-connection", connect, "POST"),
        ("/datatarget-log/{id}", target_log, "GET"),
        ("/multicast", create_multicast, "POST"),
        ("/multicast", list_multicasts, "GET"),
        ("/multicast/{id}", get_multicast, "GET"),
        ("/multicast/{id}", put_multicast, "PUT"),
        ("/multicast/{id}", delete_multicast, "DELETE"),
        ("/multicast/{id}/downlink-multicast", multicast_downlink, "POST"),
        ("/multicast/{id}/downlink-multicast", multicast_queue, "GET"),
    ]
    for path, handler, method in guarded_routes:
        routes.append(Route(PREFIX + path, guarded(handler), methods=[method]))
    return Starlette(routes=routes)


_HEX = frozenset("0123456789abcdefABCDEF")


def _downlink_body(doc: Any) -> tuple[str | None, int | None]:
    """A downlink body's hex ``data`` and ``port`` (1..223), each None when it is not one."""
    data = doc.get("data") if isinstance(doc, dict) else None
    port = doc.get("port") if isinstance(doc, dict) else None
    good_data = isinstance(data, str) and bool(data) and all(c in _HEX for c in data)
    good_port = isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 223
    return (data if good_data else None), (port if good_port else None)


def _send_failed() -> dict[str, Any]:
    return {
        "statusCode": 500,
        "message": "Could not send to chirpstack, try again later.",
        "error": "Internal Server Error",
    }


def _changed(state: Os2iotState) -> None:
    if state.on_change is not None:
        state.on_change()
